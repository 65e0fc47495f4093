// Payments (present when the payments layer runs): payments created per second, their
// first outcomes (approved by the channel, held for review, declined or failed) and
// the most frequent decline codes since start. A merchant key gets its merchant's
// payments alone (the server sends only those).
import { Chart, fitCharts } from '../chart.js';
import { el, fixed, integer, percent } from '../format.js';
import { Tiles } from './tiles.js';

export const paymentsPanel = {
  section: 'payments',
  title: (stats) => (stats.scope === 'merchant' ? 'Your payments' : 'Payments'),
  create(body) {
    const tiles = new Tiles(body, 'payments', [
      { name: 'payments_per_s', label: 'payments/s', format: (s) => fixed(s.payments.payments_per_s) },
      { name: 'approve_ratio', label: 'authorized', format: (s) => percent(s.payments.approve_ratio) },
      { name: 'review_ratio', label: 'to review', format: (s) => percent(s.payments.review_ratio) },
      { name: 'decline_ratio', label: 'declined', format: (s) => percent(s.payments.decline_ratio) },
      { name: 'created_total', label: 'created since start', format: (s) => integer(s.payments.created_total) },
      { name: 'authorized_total', label: 'authorized since start', format: (s) => integer(s.payments.authorized_total) },
      { name: 'declined_total', label: 'declined since start', format: (s) => integer(s.payments.declined_total) },
      { name: 'captured', label: 'captured since start', format: (s) => integer(s.payments.states.captured) },
    ]);
    const declines = el('ol', { class: 'reasons', id: 'payments-declines' });
    body.append(el('h3', {}, 'Top decline codes since start'), declines);
    const charts = body.appendChild(el('div', { class: 'charts' }));
    const rate = new Chart(charts, 'payments/s', [
      { key: 'payments_per_s', label: 'created' },
      { key: 'payments_authorized_per_s', label: 'authorized' },
      { key: 'payments_declined_per_s', label: 'declined' },
    ]);
    fitCharts(charts, [rate]);
    return {
      update(stats) {
        tiles.update(stats);
        rate.update(stats.history);
        const items = stats.payments.top_declines.map((d) => el('li', {}, el('code', {}, d.code), ` ${d.count}`));
        if (items.length === 0) items.push(el('li', { class: 'muted' }, 'none yet'));
        declines.replaceChildren(...items);
      },
    };
  },
};
