//! The mailboxes of an ingest's rows, numbered for the writer.
//!
//! Each row carries its mailbox's address; the database wants the
//! mailbox's id. The parser's thread numbers every row's mailbox in order
//! of first appearance as the row joins a batch
//! ([`crate::ingest::correlate::Rows::number_mailboxes`]), and each batch
//! carries the addresses numbered since the batch before
//! ([`NewMailboxes`]). The writer resolves the id of each new address
//! once, and maps every row's number to its id through a vector.
//!
//! Before, the writer looked up every row's address in a map of all
//! mailboxes: text the parser had written on the other core a batch
//! earlier, so most lookups missed the processor's caches, on the thread
//! that limits the whole ingest. The parser's thread has time to spare,
//! and the rows it has just made are still near it.

use super::correlate::Text;

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
}

/// The addresses numbered since the batch before: `names[i]` has number
/// `first + i`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewMailboxes {
    pub first: u32,
    pub names: Vec<Text>,
}

impl Mailboxes {
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

    /// The addresses numbered since the last call, for the batch that
    /// holds the first rows naming them.
    pub fn take_new(&mut self) -> NewMailboxes {
        let first = self.sent;
        self.sent = self.names.len();
        NewMailboxes {
            first: u32::try_from(first).expect("fewer than 2^32 mailboxes"),
            names: self.names[first..].to_vec(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_follow_first_appearance_and_go_out_once() {
        let mut m = Mailboxes::default();
        let (a, b, c) = (Text::from("a@x"), Text::from("b@x"), Text::from("c@x"));
        // Equal addresses in separate texts are one mailbox.
        let numbers = [m.number(&a), m.number(&b), m.number(&Text::from("a@x"))];
        assert_eq!(numbers, [0, 1, 0]);
        assert_eq!(
            m.take_new(),
            NewMailboxes {
                first: 0,
                names: vec![a.clone(), b]
            }
        );
        assert_eq!(m.number(&a), 0);
        assert_eq!(
            m.take_new(),
            NewMailboxes {
                first: 2,
                names: vec![]
            }
        );
        assert_eq!(m.number(&c), 2);
        assert_eq!(
            m.take_new(),
            NewMailboxes {
                first: 2,
                names: vec![c]
            }
        );
    }
}
