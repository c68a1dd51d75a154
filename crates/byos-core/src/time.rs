//! Wall-clock helpers in the formats Azure puts on the wire.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Seconds since the Unix epoch, as JWT claims and managed-identity answers carry them.
pub fn unix_now() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

/// The current time as ARM writes it (`2026-11-23T17:12:00.1234567Z` style, RFC 3339).
pub fn rfc3339_now() -> String {
    rfc3339(OffsetDateTime::now_utc())
}

/// Formats a timestamp as RFC 3339; formatting a valid UTC time cannot fail, the fallback is for form.
pub fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap_or_else(|_| at.unix_timestamp().to_string())
}

/// Whether an RFC 3339 time (a soft-deleted object's scheduled purge date) has come; an unreadable
/// one never has.
pub fn has_passed(rfc3339_time: &str) -> bool {
    OffsetDateTime::parse(rfc3339_time, &Rfc3339).is_ok_and(|at| at <= OffsetDateTime::now_utc())
}
