//! The `pgoutput` logical replication messages (protocol version 1) that carry changes: Relation,
//! Type, Insert, Update, Delete, Truncate and Origin. Begin and Commit are decoded by the
//! transport (`pgwire-replication`); every other message is reported as [`Message::Other`], never
//! dropped silently by the caller's match.
//!
//! Values arrive as PostgreSQL's text output of each column; an unchanged TOAST value (an update
//! that did not touch a large column, without REPLICA IDENTITY FULL) is [`Datum::Unchanged`], not
//! NULL, so that a consumer is never told a value became NULL when it did not.

use bytes::{Buf, Bytes};

/// A column of a relation as pgoutput describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelationColumn {
    /// Whether it is part of the replica identity (the primary key, or every column with FULL).
    pub identity: bool,
    /// Its name.
    pub name: String,
    /// Its type's OID.
    pub type_oid: u32,
    /// Its type modifier (`-1` for none): a numeric's precision and scale, a timestamp's digits.
    pub type_modifier: i32,
}

/// A table's shape, sent before the first change of it in a session and after every change of
/// its shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    /// The table's OID.
    pub id: u32,
    /// Its schema.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// `REPLICA IDENTITY`: `d` default, `n` nothing, `f` full, `i` index.
    pub replica_identity: u8,
    /// Its columns in order.
    pub columns: Vec<RelationColumn>,
}

/// One column's value in a tuple.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Datum {
    /// SQL NULL.
    Null,
    /// An unchanged TOAST value: PostgreSQL did not send it.
    Unchanged,
    /// The column's text output.
    Text(Bytes),
}

/// A decoded change message.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// A table's shape.
    Relation(Relation),
    /// A type's name (sent before a relation that uses a non-built-in type).
    Type {
        /// Its OID.
        id: u32,
        /// Its schema.
        namespace: String,
        /// Its name.
        name: String,
    },
    /// A row inserted.
    Insert {
        /// The table's OID.
        relation: u32,
        /// The new row.
        new: Vec<Datum>,
    },
    /// A row updated.
    Update {
        /// The table's OID.
        relation: u32,
        /// The old row: with REPLICA IDENTITY FULL the whole row (`full`), otherwise only its
        /// identity columns and only when they changed; `None` when not sent.
        old: Option<Vec<Datum>>,
        /// Whether `old` is the whole row.
        old_is_full: bool,
        /// The new row.
        new: Vec<Datum>,
    },
    /// A row deleted.
    Delete {
        /// The table's OID.
        relation: u32,
        /// The old row (identity columns only unless `old_is_full`).
        old: Vec<Datum>,
        /// Whether `old` is the whole row.
        old_is_full: bool,
    },
    /// Tables truncated.
    Truncate {
        /// The tables' OIDs.
        relations: Vec<u32>,
        /// `CASCADE` (1) and `RESTART IDENTITY` (2) bits.
        options: u8,
    },
    /// The origin of the transaction (replicated from elsewhere).
    Origin {
        /// The origin's name.
        name: String,
    },
    /// A message of a kind this decoder does not read (its tag).
    Other(u8),
}

/// Why a message could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(pub String);

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "malformed pgoutput message: {}", self.0)
    }
}

type Result<T> = std::result::Result<T, DecodeError>;

struct Reader(Bytes);

impl Reader {
    fn need(&self, n: usize, what: &str) -> Result<()> {
        if self.0.remaining() < n {
            return Err(DecodeError(format!("{what} cut short")));
        }
        Ok(())
    }

    fn u8(&mut self, what: &str) -> Result<u8> {
        self.need(1, what)?;
        Ok(self.0.get_u8())
    }

    fn i16(&mut self, what: &str) -> Result<i16> {
        self.need(2, what)?;
        Ok(self.0.get_i16())
    }

    fn i32(&mut self, what: &str) -> Result<i32> {
        self.need(4, what)?;
        Ok(self.0.get_i32())
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        self.need(4, what)?;
        Ok(self.0.get_u32())
    }

    fn i64(&mut self, what: &str) -> Result<i64> {
        self.need(8, what)?;
        Ok(self.0.get_i64())
    }

    fn string(&mut self, what: &str) -> Result<String> {
        let end = self
            .0
            .iter()
            .position(|b| *b == 0)
            .ok_or_else(|| DecodeError(format!("{what} has no terminator")))?;
        let s = self.0.split_to(end);
        self.0.advance(1);
        String::from_utf8(s.to_vec()).map_err(|_| DecodeError(format!("{what} is not UTF-8")))
    }

    fn bytes(&mut self, n: usize, what: &str) -> Result<Bytes> {
        self.need(n, what)?;
        Ok(self.0.split_to(n))
    }

    fn tuple(&mut self) -> Result<Vec<Datum>> {
        let n = self.i16("tuple column count")?;
        let n = usize::try_from(n).map_err(|_| DecodeError("negative column count".into()))?;
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(match self.u8("tuple column kind")? {
                b'n' => Datum::Null,
                b'u' => Datum::Unchanged,
                kind @ (b't' | b'b') => {
                    let len = self.i32("value length")?;
                    let len = usize::try_from(len)
                        .map_err(|_| DecodeError("negative value length".into()))?;
                    if kind == b'b' {
                        return Err(DecodeError(
                            "a binary value: the stream was started with binary 'true'".into(),
                        ));
                    }
                    Datum::Text(self.bytes(len, "value")?)
                }
                other => {
                    return Err(DecodeError(format!(
                        "unknown tuple column kind {:?}",
                        other as char
                    )));
                }
            });
        }
        Ok(out)
    }
}

/// Decodes one message (the payload of an XLogData frame).
pub fn decode(data: Bytes) -> Result<Message> {
    let mut r = Reader(data);
    let tag = r.u8("message tag")?;
    Ok(match tag {
        b'R' => {
            let id = r.u32("relation id")?;
            let namespace = r.string("relation namespace")?;
            let name = r.string("relation name")?;
            let replica_identity = r.u8("replica identity")?;
            let n = r.i16("relation column count")?.max(0) as usize;
            let mut columns = Vec::with_capacity(n);
            for _ in 0..n {
                let flags = r.u8("column flags")?;
                columns.push(RelationColumn {
                    identity: flags & 1 == 1,
                    name: r.string("column name")?,
                    type_oid: r.u32("column type")?,
                    type_modifier: r.i32("column type modifier")?,
                });
            }
            Message::Relation(Relation {
                id,
                namespace: if namespace.is_empty() {
                    "pg_catalog".to_owned()
                } else {
                    namespace
                },
                name,
                replica_identity,
                columns,
            })
        }
        b'Y' => Message::Type {
            id: r.u32("type id")?,
            namespace: r.string("type namespace")?,
            name: r.string("type name")?,
        },
        b'I' => {
            let relation = r.u32("relation id")?;
            match r.u8("insert tuple tag")? {
                b'N' => Message::Insert {
                    relation,
                    new: r.tuple()?,
                },
                other => return Err(DecodeError(format!("insert tuple tag {other}"))),
            }
        }
        b'U' => {
            let relation = r.u32("relation id")?;
            let (old, old_is_full, tag) = match r.u8("update tuple tag")? {
                t @ (b'K' | b'O') => (Some(r.tuple()?), t == b'O', r.u8("update new tag")?),
                t => (None, false, t),
            };
            if tag != b'N' {
                return Err(DecodeError(format!("update new tuple tag {tag}")));
            }
            Message::Update {
                relation,
                old,
                old_is_full,
                new: r.tuple()?,
            }
        }
        b'D' => {
            let relation = r.u32("relation id")?;
            let t = r.u8("delete tuple tag")?;
            if t != b'K' && t != b'O' {
                return Err(DecodeError(format!("delete tuple tag {t}")));
            }
            Message::Delete {
                relation,
                old: r.tuple()?,
                old_is_full: t == b'O',
            }
        }
        b'T' => {
            let n = r.i32("truncate relation count")?.max(0) as usize;
            let options = r.u8("truncate options")?;
            let relations = (0..n)
                .map(|_| r.u32("truncated relation"))
                .collect::<Result<_>>()?;
            Message::Truncate { relations, options }
        }
        b'O' => {
            r.i64("origin lsn")?;
            Message::Origin {
                name: r.string("origin name")?,
            }
        }
        other => Message::Other(other),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds pgoutput messages for tests.
    #[derive(Default)]
    pub struct Wire(pub Vec<u8>);

    impl Wire {
        pub fn tag(mut self, t: u8) -> Self {
            self.0.push(t);
            self
        }
        pub fn u32(mut self, v: u32) -> Self {
            self.0.extend(v.to_be_bytes());
            self
        }
        pub fn i16(mut self, v: i16) -> Self {
            self.0.extend(v.to_be_bytes());
            self
        }
        pub fn i32(mut self, v: i32) -> Self {
            self.0.extend(v.to_be_bytes());
            self
        }
        pub fn s(mut self, v: &str) -> Self {
            self.0.extend(v.as_bytes());
            self.0.push(0);
            self
        }
        pub fn text(mut self, v: &str) -> Self {
            self.0.push(b't');
            self.0.extend((v.len() as i32).to_be_bytes());
            self.0.extend(v.as_bytes());
            self
        }
        pub fn bytes(self) -> Bytes {
            Bytes::from(self.0)
        }
    }

    #[test]
    fn a_relation_and_its_changes_decode() {
        let relation = Wire::default()
            .tag(b'R')
            .u32(16385)
            .s("public")
            .s("orders")
            .tag(b'd')
            .i16(2)
            .tag(1)
            .s("id")
            .u32(23)
            .i32(-1)
            .tag(0)
            .s("price")
            .u32(1700)
            .i32((10 << 16 | 2) + 4);
        let Message::Relation(rel) = decode(relation.bytes()).unwrap() else {
            panic!("not a relation");
        };
        assert_eq!(
            (rel.namespace.as_str(), rel.name.as_str()),
            ("public", "orders")
        );
        assert!(rel.columns[0].identity && !rel.columns[1].identity);
        assert_eq!(rel.columns[1].type_modifier, (10 << 16 | 2) + 4);

        let update = Wire::default()
            .tag(b'U')
            .u32(16385)
            .tag(b'N')
            .i16(3)
            .text("7")
            .tag(b'n')
            .tag(b'u');
        assert_eq!(
            decode(update.bytes()).unwrap(),
            Message::Update {
                relation: 16385,
                old: None,
                old_is_full: false,
                new: vec![
                    Datum::Text(Bytes::from_static(b"7")),
                    Datum::Null,
                    Datum::Unchanged
                ],
            }
        );
        let delete = Wire::default()
            .tag(b'D')
            .u32(16385)
            .tag(b'K')
            .i16(1)
            .text("7");
        assert!(matches!(
            decode(delete.bytes()).unwrap(),
            Message::Delete { old_is_full: false, ref old, .. } if old.len() == 1
        ));
        let truncate = Wire::default().tag(b'T').i32(2).tag(1).u32(1).u32(2);
        assert_eq!(
            decode(truncate.bytes()).unwrap(),
            Message::Truncate {
                relations: vec![1, 2],
                options: 1
            }
        );
    }

    #[test]
    fn a_cut_message_is_an_error_not_a_panic() {
        let cut = Wire::default().tag(b'I').u32(1).tag(b'N').i16(2).text("1");
        assert!(decode(cut.bytes()).is_err());
        assert!(decode(Bytes::new()).is_err());
        assert_eq!(
            decode(Bytes::from_static(b"Z")).unwrap(),
            Message::Other(b'Z')
        );
    }
}
