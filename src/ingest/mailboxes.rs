//! A batch's rows readied for the writer: their mailboxes numbered, the
//! rows ordered by mailbox.
//!
//! Each row carries its mailbox's address; the database wants the
//! mailbox's id. As a batch is handed to the writer, the parser's thread
//! numbers every row's mailbox in order of first appearance
//! ([`Mailboxes::prepare`]), and the batch carries the addresses numbered
//! since the batch before ([`NewMailboxes`]). The writer resolves the id of
//! each new address once, and maps every row's number to its id through a
//! vector ([`Ids`]).
//!
//! The parser's thread also puts the batch's rows in the order the writer
//! inserts them, by the id of their mailbox: the rows of one mailbox sit
//! side by side in the tables' index `(mailbox_id, day, key)`, so that
//! order walks the index instead of jumping across it (see the store's
//! bulk insert), and the writer then reads the rows front to back.
//!
//! Both were the writer's work, on the thread that limits the whole
//! ingest. Before, it looked up every row's address in a map of all
//! mailboxes, and read the rows in mailbox order wherever they lay: text
//! and rows the parser had written on the other core, so most reads missed
//! the processor's caches. The parser's thread has time to spare, and the
//! rows it has just made are still near it.

use std::sync::{Arc, PoisonError, RwLock};

use super::access::AccessRow;
use super::correlate::{Row, Rows, Text};
use super::received::MessageRow;

/// Numbers by address, and addresses by number.
///
/// Lives as long as the writer whose batches use its numbers (the writer
/// lends it to each pass's parser; see `Writer::lend_mailboxes`).
#[derive(Debug, Default)]
pub struct Mailboxes {
    /// Seeded hashing: log lines can name mailboxes an attacker chose.
    numbers: foldhash::HashMap<Text, u32>,
    /// Every address numbered, at its number.
    names: Vec<Text>,
    /// `names[..sent]` went out with a batch already.
    sent: usize,
    /// The ids the writer has found for the numbers so far.
    ids: Ids,
}

/// The addresses numbered since the batch before: `names[i]` has number
/// `first + i`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewMailboxes {
    pub first: u32,
    pub names: Vec<Text>,
}

/// The database id of each mailbox number, at its number, as far as the
/// writer has committed them; shared by the writer, which adds the ids of
/// a transaction's new mailboxes once it commits, and the parser's thread,
/// which orders rows by them.
#[derive(Debug, Clone, Default)]
pub struct Ids(Arc<RwLock<Vec<i64>>>);

impl Ids {
    /// Runs `f` on the ids. (A thread that panicked holding the lock left
    /// a vector of whole ids, only perhaps fewer: still good to read.)
    pub fn read<R>(&self, f: impl FnOnce(&[i64]) -> R) -> R {
        f(&self.0.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Runs `f` on the ids, to change them.
    pub fn write<R>(&self, f: impl FnOnce(&mut Vec<i64>) -> R) -> R {
        f(&mut self.0.write().unwrap_or_else(PoisonError::into_inner))
    }
}

impl Mailboxes {
    /// A numbering whose ids the writer keeps in `ids`.
    pub fn new(ids: Ids) -> Mailboxes {
        Mailboxes {
            ids,
            ..Mailboxes::default()
        }
    }

    /// The number of the mailbox `address`, given now if it is new.
    pub fn number(&mut self, address: &Text) -> u32 {
        if let Some(&no) = self.numbers.get(address) {
            return no;
        }
        let no = u32::try_from(self.names.len()).expect("fewer than 2^32 mailboxes");
        self.numbers.insert(address.clone(), no);
        self.names.push(address.clone());
        no
    }

    /// Readies `rows` for the writer: numbers every row's mailbox, and
    /// orders the rows by the id of their mailbox (mailboxes with no id
    /// yet after all others, by number), each mailbox's rows in the order
    /// they came (received-mail rows by their hash, which is how they are
    /// stored). Returns the mailboxes numbered since the last call, for
    /// the batch that holds the first rows naming them.
    pub fn prepare(&mut self, rows: &mut Rows) -> NewMailboxes {
        for r in &mut rows.smtp {
            r.mailbox_no = Some(self.number(&r.mailbox));
        }
        for r in &mut rows.access {
            r.mailbox_no = Some(self.number(&r.mailbox));
        }
        for r in &mut rows.messages {
            r.mailbox_no = Some(self.number(&r.mailbox));
        }
        self.ids.read(|ids| {
            let key = |no: Option<u32>| {
                let no = no.unwrap_or(u32::MAX);
                match ids.get(no as usize) {
                    Some(&id) => (id, 0),
                    None => (i64::MAX, no),
                }
            };
            order(&mut rows.smtp, |r: &Row| key(r.mailbox_no));
            order(&mut rows.access, |r: &AccessRow| key(r.mailbox_no));
            // Received-mail rows are clustered by Message-ID's hash after
            // the mailbox (see `ready_rows`, which gives it).
            order(&mut rows.messages, |r: &MessageRow| {
                (key(r.mailbox_no), r.msgid_hash)
            });
        });
        let first = self.sent;
        self.sent = self.names.len();
        NewMailboxes {
            first: u32::try_from(first).expect("fewer than 2^32 mailboxes"),
            names: self.names[first..].to_vec(),
        }
    }
}

/// Reorders `rows` by `key`, stably, in place: rows are hundreds of bytes,
/// so they move by following the permutation's cycles (about one swap a
/// row, with no second copy of the batch) rather than by a sort that would
/// move each many times.
fn order<T, K: Ord>(rows: &mut [T], key: impl Fn(&T) -> K) {
    let mut by: Vec<(K, u32)> = rows
        .iter()
        .enumerate()
        .map(|(i, r)| (key(r), i as u32))
        .collect();
    if by.is_sorted() {
        return;
    }
    by.sort_unstable();
    // `from[p]`: where the row that belongs at `p` is now.
    let mut from: Vec<u32> = by.into_iter().map(|(_, i)| i).collect();
    for start in 0..from.len() {
        // Each cycle: bring its rows in one by one; the row that was at
        // `start` travels along and lands where it belongs last.
        let mut at = start;
        loop {
            let src = from[at] as usize;
            from[at] = at as u32;
            if src == start {
                break;
            }
            rows.swap(at, src);
            at = src;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(mailbox: &str, key: i64) -> AccessRow {
        AccessRow {
            key,
            mailbox: Text::from(mailbox),
            ..AccessRow::default()
        }
    }

    fn keys(rows: &Rows) -> Vec<(String, i64, Option<u32>)> {
        rows.access
            .iter()
            .map(|r| (r.mailbox.to_string(), r.key, r.mailbox_no))
            .collect()
    }

    #[test]
    fn order_is_a_stable_sort() {
        let mut seed = 7u64;
        let mut next = move |n: u64| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) % n
        };
        for len in 0..200 {
            // (key, original position), keys from a small range so many tie.
            let mut v: Vec<(u64, usize)> = (0..len).map(|i| (next(8), i)).collect();
            let mut want = v.clone();
            want.sort_by_key(|r| r.0);
            order(&mut v, |r| r.0);
            assert_eq!(v, want, "{len}");
        }
    }

    #[test]
    fn rows_are_numbered_and_ordered_by_id_then_new_by_number() {
        let ids = Ids::default();
        let mut m = Mailboxes::new(ids.clone());
        let mut rows = Rows {
            access: vec![row("b@x", 1), row("a@x", 2), row("b@x", 3)],
            ..Rows::default()
        };
        let new = m.prepare(&mut rows);
        // No ids yet: by number, which is order of first appearance.
        assert_eq!(
            keys(&rows),
            [
                ("b@x".into(), 1, Some(0)),
                ("b@x".into(), 3, Some(0)),
                ("a@x".into(), 2, Some(1)),
            ]
        );
        assert_eq!(new.first, 0);
        assert_eq!(new.names, [Text::from("b@x"), Text::from("a@x")]);
        // The writer gave b@x id 20 and a@x id 10.
        ids.write(|v| v.extend([20, 10]));
        rows.access = vec![
            row("c@x", 4),
            row("b@x", 5),
            row("a@x", 6),
            row("b@x", 7),
            row("d@x", 8),
        ];
        let new = m.prepare(&mut rows);
        assert_eq!(
            keys(&rows),
            [
                ("a@x".into(), 6, Some(1)),
                ("b@x".into(), 5, Some(0)),
                ("b@x".into(), 7, Some(0)),
                ("c@x".into(), 4, Some(2)),
                ("d@x".into(), 8, Some(3)),
            ]
        );
        assert_eq!(new.first, 2);
        assert_eq!(new.names, [Text::from("c@x"), Text::from("d@x")]);
        // Nothing new: nothing to announce.
        rows.access = vec![row("a@x", 9)];
        assert_eq!(m.prepare(&mut rows).names, Vec::<Text>::new());
    }
}
