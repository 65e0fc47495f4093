// The single writer: commits, group-commit batch size and its queue (admin view).
import { Chart, fitCharts } from '../chart.js';
import { fixed, integer } from '../format.js';
import { Tiles } from './tiles.js';

export const writerPanel = {
  section: 'writer',
  title: () => 'Writer',
  create(body) {
    const tiles = new Tiles(body, 'writer', [
      { name: 'transfers_per_s', label: 'committed transfers/s', format: (s) => fixed(s.writer.transfers_per_s) },
      { name: 'batch_size_mean', label: 'events per batch', format: (s) => fixed(s.writer.batch_size_mean) },
      { name: 'batches_per_s', label: 'commits/s', format: (s) => fixed(s.writer.batches_per_s) },
      {
        name: 'queue_depth',
        label: 'queue depth',
        format: (s) => `${integer(s.writer.queue_depth)} / ${integer(s.writer.queue_max)}`,
        alarm: (s) => s.writer.queue_depth > 0.8 * s.writer.queue_max,
      },
      { name: 'transfers_committed_total', label: 'committed since start', format: (s) => integer(s.writer.transfers_committed_total) },
      { name: 'batches_failed_total', label: 'failed batches', format: (s) => integer(s.writer.batches_failed_total), alarm: (s) => s.writer.batches_failed_total > 0 },
    ]);
    const charts = body.appendChild(document.createElement('div'));
    charts.className = 'charts';
    const commits = new Chart(charts, 'committed transfers/s', [{ key: 'committed_per_s', label: 'committed' }]);
    const queue = new Chart(charts, 'queue and batch', [
      { key: 'queue_depth', label: 'queue depth' },
      { key: 'batch_size', label: 'events per batch' },
    ]);
    fitCharts(charts, [commits, queue]);
    return {
      update(stats) {
        tiles.update(stats);
        commits.update(stats.history);
        queue.update(stats.history);
      },
    };
  },
};
