//! History paging, the same for every backend: newest first, at most `limit` items and
//! about `max_bytes` of stored records (a single item is always given, whatever its size).

use graycast_protocol::HistoryItem;

use super::HistoryPage;

/// Fills one page of a key's history from records read newest first.
pub(super) struct Pager {
    page: HistoryPage,
    bytes: usize,
    limit: usize,
    max_bytes: usize,
}

impl Pager {
    pub(super) fn new(limit: usize, max_bytes: usize) -> Pager {
        Pager { page: HistoryPage::default(), bytes: 0, limit, max_bytes }
    }

    /// Takes the next item, whose stored record has `size` bytes, unless the page is full;
    /// false (and the page says more items exist) when it is.
    pub(super) fn take(&mut self, size: usize, item: impl FnOnce() -> HistoryItem) -> bool {
        let full = self.page.items.len() == self.limit
            || (!self.page.items.is_empty() && self.bytes + size > self.max_bytes);
        if full {
            self.page.more = true;
            return false;
        }
        self.bytes += size;
        self.page.items.push(item());
        true
    }

    pub(super) fn finish(self) -> HistoryPage {
        self.page
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(revision: u64) -> HistoryItem {
        serde_json::from_value(serde_json::json!({
            "revision": revision, "op": "put", "value": 1, "gray": null,
            "updated_at": "2026-01-01T00:00:00Z", "updated_by": "t"
        }))
        .expect("a history item")
    }

    #[test]
    fn pages_stop_at_the_count_or_the_bytes_but_always_hold_one_item() {
        let mut pager = Pager::new(2, 100);
        assert!(pager.take(10, || item(3)));
        assert!(pager.take(10, || item(2)));
        assert!(!pager.take(10, || item(1)));
        let page = pager.finish();
        assert_eq!((page.items.len(), page.more), (2, true));

        let mut pager = Pager::new(10, 100);
        assert!(pager.take(500, || item(3)), "one item, however large");
        assert!(!pager.take(1, || item(2)));
        assert!(pager.finish().more);
    }
}
