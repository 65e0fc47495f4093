// The panels, in page order. A panel is drawn only when /v1/stats carries its section
// (a merchant key gets 'api' alone; a server without a risk engine has no 'risk').
// Adding a panel for a new section (channels, outbox, settlement): one module here
// and one row in the server's stats_sections (src/api/ops_stats.c).
import { apiPanel } from './api.js';
import { channelsPanel } from './channels.js';
import { journalPanel } from './journal.js';
import { reviewsPanel } from './reviews.js';
import { riskPanel } from './risk.js';
import { writerPanel } from './writer.js';

export const panels = [apiPanel, writerPanel, channelsPanel, riskPanel, reviewsPanel, journalPanel];
