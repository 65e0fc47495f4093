/* writer/grants.h: which accounts each owner (a merchant API key) may reach, held in
 * memory by the writer so that ownership is decided where events are applied, against
 * the same state the ledger uses: a grant made earlier in the same batch counts, and a
 * batch that fails to commit takes its grants back. The store's account_grants rows
 * are the durable copy (written in the batch's transaction); this is loaded from them
 * at start. Writer thread only: nothing here locks. Not a contract (writer.h is). */
#ifndef PAYCORE_WRITER_GRANTS_H
#define PAYCORE_WRITER_GRANTS_H

#include <stdbool.h>
#include <stdint.h>

#include "ledger/ledger.h"
#include "paycore/status.h"
#include "store/store.h"
#include "writer/writer.h"

/* The account index of a grant whose account does not exist yet: it holds by id. */
#define WRITER_GRANT_NO_ACCOUNT UINT32_MAX

typedef struct writer_grants writer_grants_t;

PC_MUST_USE pc_status writer_grants_open(writer_grants_t **out);
void writer_grants_close(writer_grants_t *grants);
/* The number of owner 'owner_id' (made on first sight; stable for the process). */
uint32_t writer_grants_owner(writer_grants_t *grants, const char *owner_id);
/* Grants an account to 'owner' from now on (in the open batch, if any). */
void writer_grants_add(writer_grants_t *grants, uint32_t owner, uint32_t account_index,
                       const char *account_id);
/* True when 'owner' holds the account at 'account_index' whose id is 'account_id'. */
bool writer_grants_holds(const writer_grants_t *grants, uint32_t owner, uint32_t account_index,
                         const char *account_id);
/* The owners of the account 'account_id' at 'account_index' (or
 * WRITER_GRANT_NO_ACCOUNT), as the open batch leaves them: the first 'owners_max' owner
 * ids in id order into 'owners' (borrowed: valid until the next change). Returns how
 * many. One load for an account of one owner; an account shared by several owners
 * costs a probe per owner known. */
uint32_t writer_grants_owners_of(const writer_grants_t *grants, uint32_t account_index, const char *account_id,
                                 const char **owners, uint32_t owners_max);
/* writer_grants_owners_of for the account named 'account_id' (its index found in
 * 'ledger'), answered from a small cache by id while the grants stay as they were:
 * the owners of the same few accounts are asked for again and again (every event of
 * a merchant's payments). */
uint32_t writer_grants_owners_by_id(writer_grants_t *grants, const ledger_t *ledger, const char *account_id,
                                    const char **owners, uint32_t owners_max);
/* The batch committed: its grants stay. */
void writer_grants_commit(writer_grants_t *grants);
/* The batch failed: its grants are taken back. */
void writer_grants_rollback(writer_grants_t *grants);

/* ---- the writer's side ---- */

/* At start: every grant the store holds ('ledger' is loaded). */
PC_MUST_USE pc_status writer_grants_load(writer_grants_t *grants, store_t *store,
                                         const ledger_t *ledger);

/* What a command with an owner may reach; lives as long as the command's apply. */
typedef struct {
    ledger_reach_t reach;
    const writer_grants_t *grants;
    uint32_t owner;
    bool leg;                         /* a global transaction's leg: its clearing accounts are reached */
} writer_reach_t;

/* The reach of 'cmd' built in 'storage', or NULL when the command has no owner. */
const ledger_reach_t *writer_grants_reach(writer_grants_t *grants, const writer_cmd_t *cmd,
                                          writer_reach_t *storage);
/* After the ledger applied 'cmd': holds the grants it makes (accounts it created,
 * accounts it lists). */
void writer_grants_apply(writer_grants_t *grants, const ledger_t *ledger, const writer_cmd_t *cmd);
/* Inside the batch's transaction: the store rows of the grants 'cmd' made. */
PC_MUST_USE pc_status writer_grants_write(const writer_cmd_t *cmd, store_tx_t *tx);

#endif
