//! A capped table of slots shared fairly between source addresses: the join endpoint's open
//! connections and its answers pending their link (PROTOCOL.md §9.3, limits).
//!
//! A source may hold at most `per_source` slots. When all `total` slots are taken, a newcomer
//! takes the oldest slot of the source holding the most, if that source holds more than the
//! newcomer: a device on the LAN cannot keep another out by holding every slot from several
//! addresses, it only divides the table with them. The holder of a taken slot is told
//! ([`Slot::evicted`]) and gives up.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{watch, Notify};

/// The table; cheap to clone (shared).
#[derive(Debug, Clone)]
pub(crate) struct Slots {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    table: Mutex<Table>,
    /// Told whenever a slot is freed, for [`Slots::take_within`].
    freed: Notify,
}

#[derive(Debug)]
struct Table {
    total: usize,
    per_source: usize,
    /// How long a slot may be held; older ones are reclaimed when the table is full.
    lifetime: Duration,
    held: usize,
    next_id: u64,
    by_source: HashMap<IpAddr, VecDeque<Entry>>,
}

#[derive(Debug)]
struct Entry {
    id: u64,
    expires: Instant,
    evict: Arc<watch::Sender<bool>>,
}

/// One slot; dropping it frees it.
#[derive(Debug)]
pub(crate) struct Slot {
    table: Arc<Inner>,
    source: IpAddr,
    id: u64,
    expires: Instant,
    evict: Arc<watch::Sender<bool>>,
}

impl Slots {
    /// `total` slots, at most `per_source` per address (both at least 1), each held at most
    /// `lifetime`.
    pub(crate) fn new(total: usize, per_source: usize, lifetime: Duration) -> Slots {
        let total = total.max(1);
        Slots {
            inner: Arc::new(Inner {
                table: Mutex::new(Table {
                    total,
                    per_source: per_source.clamp(1, total),
                    lifetime,
                    held: 0,
                    next_id: 0,
                    by_source: HashMap::new(),
                }),
                freed: Notify::new(),
            }),
        }
    }

    /// A slot for `source`, waiting up to `wait` for one to be freed when its share is used up:
    /// a room joining at once gets in as the first links open, instead of being refused.
    pub(crate) async fn take_within(&self, source: IpAddr, wait: Duration) -> Option<Slot> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let freed = self.inner.freed.notified();
            tokio::pin!(freed);
            // Registered before trying, so a slot freed in between still wakes us.
            freed.as_mut().enable();
            if let Some(slot) = self.take(source, Instant::now()) {
                return Some(slot);
            }
            if tokio::time::timeout_at(deadline, freed).await.is_err() {
                // Expired slots are reclaimed by a take: one last try.
                return self.take(source, Instant::now());
            }
        }
    }

    /// A slot for `source` at `now`, or `None` when its share is used up.
    pub(crate) fn take(&self, source: IpAddr, now: Instant) -> Option<Slot> {
        let mut t = self.inner.table.lock().unwrap_or_else(|e| e.into_inner());
        let own = t.by_source.get(&source).map_or(0, VecDeque::len);
        if own >= t.per_source {
            return None;
        }
        if t.held >= t.total {
            t.reclaim_expired(now);
        }
        if t.held >= t.total && !t.evict_from_largest(own) {
            return None;
        }
        let id = t.next_id;
        t.next_id += 1;
        let evict = Arc::new(watch::channel(false).0);
        let expires = now + t.lifetime;
        t.by_source.entry(source).or_default().push_back(Entry {
            id,
            expires,
            evict: evict.clone(),
        });
        t.held += 1;
        Some(Slot {
            table: self.inner.clone(),
            source,
            id,
            expires,
            evict,
        })
    }

    /// Slots held now.
    #[cfg(test)]
    pub(crate) fn held(&self) -> usize {
        self.inner
            .table
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .held
    }
}

impl Table {
    fn reclaim_expired(&mut self, now: Instant) {
        let mut freed = 0;
        for entries in self.by_source.values_mut() {
            entries.retain(|e| {
                let keep = e.expires > now;
                if !keep {
                    e.evict.send_replace(true);
                    freed += 1;
                }
                keep
            });
        }
        self.by_source.retain(|_, v| !v.is_empty());
        self.held -= freed;
    }

    /// Frees the oldest slot of the source holding the most, if it holds more than `own`.
    fn evict_from_largest(&mut self, own: usize) -> bool {
        let largest = self
            .by_source
            .iter()
            .max_by_key(|(_, v)| (v.len(), std::cmp::Reverse(v.front().map_or(0, |e| e.id))))
            .map(|(ip, v)| (*ip, v.len()));
        let Some((ip, count)) = largest.filter(|(_, count)| *count > own) else {
            return false;
        };
        if let Some(entries) = self.by_source.get_mut(&ip) {
            if let Some(e) = entries.pop_front() {
                e.evict.send_replace(true);
                self.held -= 1;
            }
        }
        if count == 1 {
            self.by_source.remove(&ip);
        }
        true
    }
}

impl Slot {
    /// Resolves when the slot was taken by another source or reclaimed after its lifetime.
    pub(crate) async fn evicted(&self) {
        let mut rx = self.evict.subscribe();
        let _ = rx.wait_for(|gone| *gone).await;
    }

    /// When the slot's lifetime ends.
    pub(crate) fn expires(&self) -> Instant {
        self.expires
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut t = self.table.table.lock().unwrap_or_else(|e| e.into_inner());
        let mut removed = false;
        if let Some(entries) = t.by_source.get_mut(&self.source) {
            if let Some(i) = entries.iter().position(|e| e.id == self.id) {
                entries.remove(i);
                removed = true;
            }
            if entries.is_empty() {
                t.by_source.remove(&self.source);
            }
        }
        if removed {
            t.held -= 1;
            drop(t);
            self.table.freed.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, n])
    }

    #[test]
    fn per_source_cap_refuses_and_drop_frees() {
        let slots = Slots::new(10, 2, Duration::from_secs(5));
        let now = Instant::now();
        let a = slots.take(ip(1), now).unwrap();
        let _b = slots.take(ip(1), now).unwrap();
        assert!(slots.take(ip(1), now).is_none());
        assert!(slots.take(ip(2), now).is_some());
        drop(a);
        assert!(slots.take(ip(1), now).is_some());
    }

    #[tokio::test]
    async fn a_newcomer_takes_the_oldest_slot_of_the_largest_holder() {
        let slots = Slots::new(4, 4, Duration::from_secs(5));
        let now = Instant::now();
        let held: Vec<Slot> = (0..4).map(|_| slots.take(ip(1), now).unwrap()).collect();
        let newcomer = slots.take(ip(2), now).expect("a fair share");
        assert_eq!(slots.held(), 4);
        // The oldest was told, and only it.
        tokio::time::timeout(Duration::from_secs(1), held[0].evicted())
            .await
            .expect("told");
        let still = held[1].evict.subscribe();
        assert!(!*still.borrow());
        // A source never takes from one holding no more than itself.
        let second = slots.take(ip(2), now).unwrap();
        assert!(slots.take(ip(2), now).is_none(), "2 vs 2: no eviction");
        drop((newcomer, second));
        drop(held);
        assert_eq!(slots.held(), 0);
    }

    #[tokio::test]
    async fn a_waiting_request_gets_the_next_freed_slot() {
        let slots = Slots::new(1, 1, Duration::from_secs(5));
        let first = slots.take(ip(1), Instant::now()).unwrap();
        let waiting = tokio::spawn({
            let slots = slots.clone();
            async move {
                slots
                    .take_within(ip(1), Duration::from_secs(10))
                    .await
                    .is_some()
            }
        });
        tokio::task::yield_now().await;
        drop(first);
        assert!(waiting.await.unwrap());
        let _held = slots.take(ip(1), Instant::now());
        let refused = slots.take_within(ip(1), Duration::from_millis(10)).await;
        assert!(refused.is_none(), "nothing freed within the wait");
    }

    #[test]
    fn expired_slots_are_reclaimed_when_full() {
        let slots = Slots::new(2, 2, Duration::from_secs(5));
        let t0 = Instant::now();
        let a = slots.take(ip(1), t0).unwrap();
        let _b = slots.take(ip(2), t0).unwrap();
        assert!(slots.take(ip(1), t0).is_none(), "full, nobody holds more");
        let _c = slots.take(ip(1), t0 + Duration::from_secs(6)).unwrap();
        assert_eq!(slots.held(), 1, "both expired ones freed");
        drop(a);
        assert_eq!(slots.held(), 1, "a reclaimed slot is not freed twice");
    }
}
