// The review queue (GET /v1/risk/reviews): authorizations the risk engine held for a
// person. An admin key decides them here; a read_only key sees them without buttons.
import { call } from '../api.js';
import { el, integer } from '../format.js';

export const reviewsPanel = {
  name: 'reviews',
  section: 'risk',
  title: () => 'Review queue',
  create(body, page) {
    const list = el('table', { class: 'reviews', id: 'reviews' });
    const message = el('p', { class: 'muted', id: 'reviews-message', role: 'status' });
    body.append(list, message);
    let busy = false;

    async function decide(id, verb) {
      try {
        await call('POST', `/v1/risk/reviews/${encodeURIComponent(id)}/${verb}`, {});
        message.textContent = `review ${id}: ${verb === 'approve' ? 'approved' : 'declined'}`;
      } catch (error) {
        message.textContent = `review ${id}: ${error.message}`;
      }
      refresh();
    }

    function row(review, canDecide) {
      const buttons = el('td', { class: 'actions' });
      if (canDecide) {
        const approve = el('button', { type: 'button', 'data-review': review.decision_id }, 'Approve');
        const decline = el('button', { type: 'button', class: 'danger', 'data-review': review.decision_id }, 'Decline');
        approve.addEventListener('click', () => decide(review.decision_id, 'approve'));
        decline.addEventListener('click', () => decide(review.decision_id, 'decline'));
        buttons.append(approve, decline);
      }
      return el('tr', { id: `review-${review.decision_id}` },
        el('td', {}, integer(review.decision_id)),
        el('td', {}, review.payer_id),
        el('td', { class: 'num' }, `${review.amount_minor} ${review.currency}`),
        el('td', {}, new Date(review.created_ts * 1000).toISOString().slice(11, 19)),
        buttons);
    }

    async function refresh() {
      if (busy) return;
      busy = true;
      try {
        const answer = await call('GET', '/v1/risk/reviews?state=open&limit=20');
        const canDecide = page.scope === 'admin';
        const head = el('tr', {}, el('th', {}, 'id'), el('th', {}, 'payer'), el('th', {}, 'amount'), el('th', {}, 'created (UTC)'), el('th', {}, ''));
        const rows = answer.data.map((review) => row(review, canDecide));
        if (rows.length === 0) rows.push(el('tr', {}, el('td', { colspan: 5, class: 'muted' }, 'no open reviews')));
        list.replaceChildren(el('thead', {}, head), el('tbody', {}, ...rows));
      } catch (error) {
        message.textContent = `reviews: ${error.message}`;
      } finally {
        busy = false;
      }
    }

    return { update: refresh };
  },
};
