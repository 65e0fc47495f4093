// A small time-series chart over uPlot: columns from the history of /v1/stats
// ({t: [...seconds], name: [...values]}), one line a series.
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';

const COLOURS = ['#2563eb', '#dc2626', '#16a34a', '#d97706', '#7c3aed'];

export class Chart {
  // series: [{key: 'p99_ms', label: 'p99 ms'}]
  constructor(parent, title, series) {
    this.series = series;
    this.root = document.createElement('div');
    this.root.className = 'chart';
    parent.append(this.root);
    this.plot = new uPlot(
      {
        title,
        width: Math.max(240, Math.floor(parent.clientWidth / 2) - 8),
        height: 180,
        scales: { x: { time: true } },
        axes: [{}, { size: 56 }],
        series: [{}, ...series.map((s, i) => ({ label: s.label, stroke: COLOURS[i % COLOURS.length], width: 1.5, spanGaps: false }))],
        legend: { live: false },
      },
      [[], ...series.map(() => [])],
      this.root,
    );
  }

  update(history) {
    if (!history || !history.t) return;
    this.plot.setData([history.t, ...this.series.map((s) => history[s.key] || history.t.map(() => null))]);
  }

  resize(width) {
    this.plot.setSize({ width, height: 180 });
  }
}

// Two charts a row in a wide panel, one in a narrow one; follows the panel's width.
export function fitCharts(container, charts) {
  const fit = () => {
    const perRow = container.clientWidth >= 640 ? 2 : 1;
    const width = Math.max(240, Math.floor((container.clientWidth - 8 * (perRow - 1)) / perRow));
    for (const chart of charts) chart.resize(width);
  };
  new ResizeObserver(fit).observe(container);
  fit();
}
