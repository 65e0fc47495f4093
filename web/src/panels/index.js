// The panels, in page order. A panel is drawn only when /v1/stats carries its section
// (a merchant key gets 'api', and 'payments' with its own payments when it is bound to a
// merchant; a server without a risk engine has no 'risk').
// Adding a panel for a new section (settlement): one module here
// and one row in the server's stats_sections (src/api/ops_stats.c).
import { apiPanel } from './api.js';
import { channelsPanel } from './channels.js';
import { journalPanel } from './journal.js';
import { outboxPanel } from './outbox.js';
import { paymentsPanel } from './payments.js';
import { reviewsPanel } from './reviews.js';
import { riskPanel } from './risk.js';
import { writerPanel } from './writer.js';

export const panels = [apiPanel, writerPanel, paymentsPanel, channelsPanel, riskPanel, reviewsPanel, outboxPanel, journalPanel];
