// graycast console: a live view of every namespace the token may read, and an admin UI
// for keys, history, gray releases, namespace descriptions, typed configs, the change feed,
// change requests and the review of break-glass writes.
//
// Modules by job: live.js keeps the one @graycast/client and fills state.js, the one
// event source the views listen to (tables, editor, history, gray, changes, clients,
// requests, reviews);
// schemas.js asks what typed configs add (keys out of schema, clients' rejections);
// api.js makes the REST calls; json.js keeps numbers and key order exactly. This module
// wires them up and owns the Token field.

import { currentToken, setToken } from './api.js';
import { initChanges } from './changes.js';
import { initClients } from './clients.js';
import { initConfirm } from './confirm.js';
import { clearAccessProblem, initConnection } from './connection.js';
import { $, refreshRelativeTimes } from './dom.js';
import { initEditor } from './editor.js';
import { initGray } from './gray.js';
import { initHistory } from './history.js';
import { renderIdentity } from './identity.js';
import { connect } from './live.js';
import { clearMessages, watchMessageHeight } from './messages.js';
import { initPanels } from './panels.js';
import { initRequests } from './requests.js';
import { initReviews } from './reviews.js';
import { initSchemaEditor } from './schema-editor.js';
import { initSchemas } from './schemas.js';
import { state } from './state.js';
import { initTables } from './tables.js';

const RELATIVE_TIMES_MS = 15000;

/** A new token (Enter in the field): start over, since it may see other namespaces. */
function onTokenChange() {
  const token = $('#token').value.trim();
  if (token === currentToken() && !state.blocked) return;
  setToken(token);
  // What the old token ran into is stale now.
  clearMessages((d) => d.kind === 'error');
  clearAccessProblem();
  connect();
}

initConnection();
initPanels();
initConfirm();
initTables();
initEditor();
initHistory();
initGray();
initChanges();
initClients();
initSchemas();
initSchemaEditor();
initRequests();
initReviews();
$('#token').value = currentToken();
$('#token').addEventListener('change', onTokenChange);
watchMessageHeight();
renderIdentity();
setInterval(refreshRelativeTimes, RELATIVE_TIMES_MS);
connect();
