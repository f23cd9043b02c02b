//! The process-wide table of accepted sessions, keyed by (instance, id)
//! (docs/mux-protocol.md §3, §6).
//!
//! A RESUMED OPEN is looked up here: a session this process still holds is
//! re-attached to the connection the OPEN came on, whichever [`MuxServer`]
//! of the process accepted that connection. Entries leave the table when
//! the session finishes (closed either way, or the resume grace ran out).
//!
//! [`MuxServer`]: crate::server::MuxServer

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use super::session::{SessionId, SessionShared};

type Table = HashMap<SessionId, Arc<SessionShared>>;

fn table() -> MutexGuard<'static, Table> {
    static TABLE: OnceLock<Mutex<Table>> = OnceLock::new();
    TABLE
        .get_or_init(Mutex::default)
        .lock()
        // Inserts and removes are single map operations: a poisoned lock
        // still holds a consistent map.
        .unwrap_or_else(|p| p.into_inner())
}

pub(crate) fn insert(session: Arc<SessionShared>) {
    table().insert(session.id.clone(), session);
}

pub(crate) fn get(id: &SessionId) -> Option<Arc<SessionShared>> {
    table().get(id).cloned()
}

/// Forget `session` (only that very session: ids are never reused within
/// an instance, but a stale handle must not remove a newer entry).
pub(crate) fn remove(session: &Arc<SessionShared>) {
    let mut t = table();
    if t.get(&session.id).is_some_and(|s| Arc::ptr_eq(s, session)) {
        t.remove(&session.id);
    }
}

/// Every session the process holds (a copy of the list).
pub(crate) fn all() -> Vec<Arc<SessionShared>> {
    table().values().cloned().collect()
}

/// Sessions the process holds (open or waiting for a resume).
pub fn len() -> usize {
    table().len()
}
