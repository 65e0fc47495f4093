// Requests as the API serves them: for an admin or read_only key, everything; for a
// merchant key, its own requests only.
import { Chart, fitCharts } from '../chart.js';
import { fixed, integer } from '../format.js';
import { Tiles } from './tiles.js';

export const apiPanel = {
  section: 'api',
  title: (stats) => (stats.scope === 'merchant' ? 'Your requests' : 'Requests'),
  create(body) {
    const tiles = new Tiles(body, 'api', [
      { name: 'transfers_per_s', label: 'transfers/s', format: (s) => fixed(s.api.transfers_per_s) },
      { name: 'requests_per_s', label: 'requests/s', format: (s) => fixed(s.api.requests_per_s) },
      { name: 'p50_ms', label: 'latency p50 ms', format: (s) => fixed(s.api.p50_ms, 2) },
      { name: 'p99_ms', label: 'latency p99 ms', format: (s) => fixed(s.api.p99_ms, 2) },
      { name: 'errors_per_s', label: 'errors/s (5xx)', format: (s) => fixed(s.api.errors_per_s), alarm: (s) => s.api.errors_per_s > 0 },
      { name: 'rejected_per_s', label: 'rejected/s (4xx)', format: (s) => fixed(s.api.rejected_per_s) },
      { name: 'transfers_total', label: 'transfers since start', format: (s) => integer(s.api.transfers_total) },
      { name: 'requests_total', label: 'requests since start', format: (s) => integer(s.api.requests_total) },
    ]);
    const charts = body.appendChild(document.createElement('div'));
    charts.className = 'charts';
    const rate = new Chart(charts, 'per second', [
      { key: 'transfers_per_s', label: 'transfers' },
      { key: 'requests_per_s', label: 'requests' },
      { key: 'errors_per_s', label: 'errors' },
    ]);
    const latency = new Chart(charts, 'latency ms', [
      { key: 'p50_ms', label: 'p50' },
      { key: 'p99_ms', label: 'p99' },
    ]);
    fitCharts(charts, [rate, latency]);
    return {
      update(stats) {
        tiles.update(stats);
        rate.update(stats.history);
        latency.update(stats.history);
      },
    };
  },
};
