//! The transaction record of SPEC §1.

use std::borrow::Cow;

/// The message fields, in the order the seed's producer writes them.
pub const FIELDS: [&str; 13] = [
    "txn_id", "event_ts", "user_id", "card_id", "merchant", "category", "amount", "currency",
    "status", "city", "country", "lat", "lon",
];

/// One card transaction. Strings borrow from the message payload when they hold no JSON escapes.
///
/// `txn_id` and `event_ts` are required (a message without them is rejected); every other field
/// may be absent or `null`, as with Spark's `from_json`.
#[derive(Debug, Clone, PartialEq)]
pub struct Transaction<'a> {
    pub txn_id: Cow<'a, str>,
    /// The timestamp exactly as written in the message (the raw CSV layer keeps it).
    pub event_ts: Cow<'a, str>,
    /// `event_ts` normalised to UTC, in microseconds since the Unix epoch.
    pub event_time: i64,
    pub user_id: Option<Cow<'a, str>>,
    pub card_id: Option<Cow<'a, str>>,
    pub merchant: Option<Cow<'a, str>>,
    pub category: Option<Cow<'a, str>>,
    pub amount: Option<f64>,
    pub currency: Option<Cow<'a, str>>,
    pub status: Option<Cow<'a, str>>,
    pub city: Option<Cow<'a, str>>,
    pub country: Option<Cow<'a, str>>,
    pub lat: Option<f64>,
    pub lon: Option<f64>,
}

impl Transaction<'_> {
    /// The same transaction owning its strings.
    pub fn into_owned(self) -> Transaction<'static> {
        let own = |s: Option<Cow<'_, str>>| s.map(|s| Cow::Owned(s.into_owned()));
        Transaction {
            txn_id: Cow::Owned(self.txn_id.into_owned()),
            event_ts: Cow::Owned(self.event_ts.into_owned()),
            event_time: self.event_time,
            user_id: own(self.user_id),
            card_id: own(self.card_id),
            merchant: own(self.merchant),
            category: own(self.category),
            amount: self.amount,
            currency: own(self.currency),
            status: own(self.status),
            city: own(self.city),
            country: own(self.country),
            lat: self.lat,
            lon: self.lon,
        }
    }
}
