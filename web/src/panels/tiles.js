// A row of figures. Each figure is <dd id="fig-SECTION-NAME">, showing the formatted
// value; the page never shows a number the server did not send.
import { el } from '../format.js';

export class Tiles {
  constructor(parent, section, figures) {
    this.section = section;
    this.figures = figures; // [{name, label, format: (stats) => text}]
    this.cells = new Map();
    const list = el('dl', { class: 'tiles' });
    for (const figure of figures) {
      const value = el('dd', { id: `fig-${section}-${figure.name}` }, '–');
      list.append(el('div', { class: 'tile' }, el('dt', {}, figure.label), value));
      this.cells.set(figure.name, value);
    }
    parent.append(list);
  }

  update(stats) {
    for (const figure of this.figures) {
      const cell = this.cells.get(figure.name);
      const text = figure.format(stats);
      if (cell.textContent !== text) cell.textContent = text;
      cell.classList.toggle('alarm', Boolean(figure.alarm && figure.alarm(stats)));
    }
  }
}
