// Journal verification: the state of the last verification the server ran (periodic,
// or POST /v1/verify, which an admin can start here).
import { call } from '../api.js';
import { ago, el, integer } from '../format.js';

export const journalPanel = {
  section: 'journal',
  title: () => 'Journal',
  create(body, page) {
    const state = el('span', { id: 'journal-state', class: 'badge' }, '–');
    const detail = el('p', { id: 'journal-detail', class: 'muted' });
    const verify = el('button', { type: 'button', id: 'journal-verify' }, 'Verify now');
    body.append(el('p', {}, 'Verification: ', state, ' '), detail, verify);
    verify.addEventListener('click', async () => {
      verify.disabled = true;
      try {
        await call('POST', '/v1/verify', {});
      } catch (error) {
        detail.textContent = error.message;
      } finally {
        verify.disabled = false;
        page.refresh();
      }
    });
    return {
      update(stats) {
        const v = stats.journal.verify;
        state.textContent = v.state;
        state.className = `badge ${v.state}`;
        verify.hidden = page.scope !== 'admin';
        const parts = [];
        if (v.at) parts.push(`last run ${ago(Math.max(0, stats.now - v.at))}, ${integer(v.duration_ms)} ms`);
        if (v.batches !== undefined) parts.push(`${integer(v.batches)} batches, ${integer(v.transfers)} transfers`);
        if (v.head_hash) parts.push(`head ${v.head_hash.slice(0, 16)}…`);
        if (v.discrepancy) parts.push(`discrepancy: ${v.discrepancy}`);
        parts.push(v.interval_s > 0 ? `every ${v.interval_s} s` : 'on request only');
        detail.textContent = parts.join(' · ');
      },
    };
  },
};
