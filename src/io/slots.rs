//! The connection table of the socket transports (`Uring`, `Epoll`): a slot is found by its
//! `ConnId`, and a stale id (its slot free, or reused under a newer generation) finds nothing.

use super::ConnId;

/// A connection slot, as the id check sees it.
pub(super) trait Slot {
    fn generation(&self) -> u32;
    fn is_free(&self) -> bool;
    /// A receive is under way: the input must not be handed out.
    fn receiving(&self) -> bool;
}

/// The slot `conn` names, if the id is not stale.
pub(super) fn live<S: Slot>(slots: &[S], conn: ConnId) -> Option<&S> {
    slots
        .get(conn.index())
        .filter(|s| s.generation() == conn.gen() && !s.is_free())
}

/// `live`, mutable.
pub(super) fn live_mut<S: Slot>(slots: &mut [S], conn: ConnId) -> Option<&mut S> {
    slots
        .get_mut(conn.index())
        .filter(|s| s.generation() == conn.gen() && !s.is_free())
}

/// `live_mut` for the calls a stale id must never reach (`input`, `output`, `buffers`).
pub(super) fn live_or_panic<'a, S: Slot>(
    slots: &'a mut [S],
    conn: ConnId,
    what: &str,
) -> &'a mut S {
    match live_mut(slots, conn) {
        Some(s) => s,
        None => panic!("ringwsgi io: {what}({conn:?}) on a dead connection id (caller bug)"),
    }
}

/// `live_or_panic` for the calls that hand out the input (`input`, `buffers`): panics too if a
/// receive is under way (a caller bug).
pub(super) fn not_receiving<'a, S: Slot>(
    slots: &'a mut [S],
    conn: ConnId,
    what: &str,
) -> &'a mut S {
    let slot = live_or_panic(slots, conn, what);
    assert!(
        !slot.receiving(),
        "ringwsgi io: {what}({conn:?}) while a receive is in flight (caller bug)"
    );
    slot
}
