// Risk decisions: outcome shares over the window and the most frequent reasons.
import { Chart, fitCharts } from '../chart.js';
import { el, fixed, integer, percent } from '../format.js';
import { Tiles } from './tiles.js';

export const riskPanel = {
  section: 'risk',
  title: (stats) => `Risk (${stats.risk.mode})`,
  create(body) {
    const tiles = new Tiles(body, 'risk', [
      { name: 'decisions_per_s', label: 'decisions/s', format: (s) => fixed(s.risk.decisions_per_s) },
      { name: 'approve_ratio', label: 'approved', format: (s) => percent(s.risk.approve_ratio) },
      { name: 'review_ratio', label: 'to review', format: (s) => percent(s.risk.review_ratio) },
      { name: 'decline_ratio', label: 'declined', format: (s) => percent(s.risk.decline_ratio) },
      { name: 'reviews_open', label: 'open reviews', format: (s) => integer(s.risk.reviews_open) },
    ]);
    const reasons = el('ol', { class: 'reasons', id: 'risk-reasons' });
    body.append(el('h3', {}, 'Top reasons since start'), reasons);
    const charts = body.appendChild(el('div', { class: 'charts' }));
    const outcomes = new Chart(charts, 'decisions/s', [
      { key: 'approve_per_s', label: 'approve' },
      { key: 'review_per_s', label: 'review' },
      { key: 'decline_per_s', label: 'decline' },
    ]);
    fitCharts(charts, [outcomes]);
    return {
      update(stats) {
        tiles.update(stats);
        outcomes.update(stats.history);
        const items = stats.risk.top_reasons.map((r) => el('li', {}, el('code', {}, r.code), ` ${r.count}`));
        if (items.length === 0) items.push(el('li', { class: 'muted' }, 'none yet'));
        reasons.replaceChildren(...items);
      },
    };
  },
};
