// Payment channels (present when the gateway runs): each channel's circuit breaker,
// its success rate over the gateway's window, latency and load.
import { el, integer, percent } from '../format.js';

const ms = (v) => (v === null || v === undefined ? '–' : v.toFixed(1));

export const channelsPanel = {
  section: 'channels',
  title: (stats) => `Channels (${stats.channels.length})`,
  create(body) {
    const table = el('table', { class: 'reviews', id: 'channels' });
    body.append(table);
    return {
      update(stats) {
        const head = el('tr', {}, el('th', {}, 'channel'), el('th', {}, 'breaker'), el('th', {}, 'success'),
          el('th', {}, 'p50 ms'), el('th', {}, 'p99 ms'), el('th', {}, 'in flight'), el('th', {}, 'attempts'));
        const rows = stats.channels.map((c) => el('tr', { id: `channel-${c.name}` },
          el('td', {}, `${c.name} (${c.kind})`),
          el('td', {}, el('span', { class: `badge breaker-${c.breaker}` }, c.breaker)),
          el('td', { class: 'num' }, percent(c.success_rate)),
          el('td', { class: 'num' }, ms(c.latency_ms && c.latency_ms.p50)),
          el('td', { class: 'num' }, ms(c.latency_ms && c.latency_ms.p99)),
          el('td', { class: 'num' }, integer(c.in_flight)),
          el('td', { class: 'num' }, integer(c.attempts))));
        if (rows.length === 0) rows.push(el('tr', {}, el('td', { colspan: 7, class: 'muted' }, 'no channel configured')));
        table.replaceChildren(el('thead', {}, head), el('tbody', {}, ...rows));
      },
    };
  },
};
