// The events outbox: per destination (webhook endpoints, the broker), the age of the
// oldest event not yet delivered, and what was delivered, retried and dead-lettered.
import { Chart, fitCharts } from '../chart.js';
import { el, fixed, integer } from '../format.js';
import { Tiles } from './tiles.js';

const LAG_ALARM_S = 300; // as the PaycoreOutboxLag alert (deploy/prometheus)

function destinationRow(d) {
  const state = d.disabled ? 'disabled' : 'enabled';
  return el('tr', { id: `outbox-${d.id}` },
    el('td', {}, `${d.id} (${d.kind})`),
    el('td', {}, el('span', { class: `badge dest-${state}` }, state)),
    el('td', { class: `num lag${d.lag_s > LAG_ALARM_S ? ' alarm' : ''}` }, fixed(d.lag_s)),
    el('td', { class: 'num delivered' }, integer(d.delivered_total)),
    el('td', { class: 'num' }, integer(d.retried_total)),
    el('td', { class: 'num' }, integer(d.dead_lettered_total)));
}

export const outboxPanel = {
  section: 'outbox',
  title: (stats) => `Events outbox (${stats.outbox.destinations.length} destinations)`,
  create(body) {
    const tiles = new Tiles(body, 'outbox', [
      { name: 'lag_s_max', label: 'oldest undelivered s', format: (s) => fixed(s.outbox.lag_s_max), alarm: (s) => s.outbox.lag_s_max > LAG_ALARM_S },
      { name: 'delivered_per_s', label: 'delivered/s', format: (s) => fixed(s.outbox.delivered_per_s) },
      { name: 'written_total', label: 'written since start', format: (s) => integer(s.outbox.written_total) },
      { name: 'delivered_total', label: 'delivered since start', format: (s) => integer(s.outbox.delivered_total) },
      { name: 'dead_lettered_total', label: 'dead-lettered', format: (s) => integer(s.outbox.dead_lettered_total), alarm: (s) => s.outbox.dead_lettered_total > 0 },
      { name: 'broker', label: 'broker', format: (s) => (s.outbox.amqp ? (s.outbox.amqp.connected ? 'connected' : 'down') : 'not configured'), alarm: (s) => Boolean(s.outbox.amqp && !s.outbox.amqp.connected) },
    ]);
    const table = el('table', { class: 'reviews', id: 'outbox' });
    const charts = el('div', { class: 'charts' });
    body.append(table, charts);
    const lag = new Chart(charts, 'oldest undelivered s', [{ key: 'outbox_lag_s', label: 'worst destination' }]);
    const delivered = new Chart(charts, 'delivered/s', [{ key: 'outbox_delivered_per_s', label: 'delivered' }]);
    fitCharts(charts, [lag, delivered]);
    return {
      update(stats) {
        tiles.update(stats);
        lag.update(stats.history);
        delivered.update(stats.history);
        const head = el('tr', {}, el('th', {}, 'destination'), el('th', {}, 'state'), el('th', {}, 'lag s'),
          el('th', {}, 'delivered'), el('th', {}, 'retried'), el('th', {}, 'dead-lettered'));
        const rows = stats.outbox.destinations.map(destinationRow);
        if (rows.length === 0) rows.push(el('tr', {}, el('td', { colspan: 6, class: 'muted' }, 'no webhook endpoint or broker')));
        table.replaceChildren(el('thead', {}, head), el('tbody', {}, ...rows));
      },
    };
  },
};
