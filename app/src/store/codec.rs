//! How the domain's validated types go into and come out of SQL columns.
//!
//! The store binds `UserId`, `ResourceId`, `BookingDate` and `KeyKind`
//! directly, and decoding validates again: a row that no request could have
//! written (a hand-edited id, an unknown key kind) is a decode error, not a
//! value the protocol trusts. Written generically over the database, so
//! PostgreSQL and SQLite share it.

use chrono::NaiveDate;
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::{Database, Decode, Encode, Type};

use crate::domain::{BookingDate, KeyKind, ResourceId, UserId};

/// A type stored as a text column, validated on the way out.
macro_rules! text_column {
    ($name:ty, $as_str:expr, $parse:expr) => {
        impl<DB: Database> Type<DB> for $name
        where
            String: Type<DB>,
        {
            fn type_info() -> DB::TypeInfo {
                <String as Type<DB>>::type_info()
            }
            fn compatible(ty: &DB::TypeInfo) -> bool {
                <String as Type<DB>>::compatible(ty)
            }
        }

        impl<'q, DB: Database> Encode<'q, DB> for $name
        where
            String: Encode<'q, DB>,
        {
            fn encode_by_ref(
                &self,
                buf: &mut <DB as Database>::ArgumentBuffer<'q>,
            ) -> Result<IsNull, BoxDynError> {
                let text: &str = $as_str(self);
                text.to_owned().encode(buf)
            }
        }

        impl<'r, DB: Database> Decode<'r, DB> for $name
        where
            String: Decode<'r, DB>,
        {
            fn decode(value: <DB as Database>::ValueRef<'r>) -> Result<Self, BoxDynError> {
                let text = <String as Decode<'r, DB>>::decode(value)?;
                $parse(&text)
            }
        }
    };
}

text_column!(UserId, UserId::as_str, |t: &str| UserId::parse(t)
    .map_err(|e| format!("stored user id {t:?} {}", e.message).into()));
text_column!(ResourceId, ResourceId::as_str, |t: &str| ResourceId::parse(
    t
)
.map_err(|e| format!("stored resource id {t:?} {}", e.message).into()));
text_column!(KeyKind, |k: &KeyKind| k.as_str(), |t: &str| KeyKind::parse(
    t
)
.ok_or_else(|| format!("unknown key kind {t:?}").into()));

impl<DB: Database> Type<DB> for BookingDate
where
    NaiveDate: Type<DB>,
{
    fn type_info() -> DB::TypeInfo {
        <NaiveDate as Type<DB>>::type_info()
    }
    fn compatible(ty: &DB::TypeInfo) -> bool {
        <NaiveDate as Type<DB>>::compatible(ty)
    }
}

impl<'q, DB: Database> Encode<'q, DB> for BookingDate
where
    NaiveDate: Encode<'q, DB>,
{
    fn encode_by_ref(
        &self,
        buf: &mut <DB as Database>::ArgumentBuffer<'q>,
    ) -> Result<IsNull, BoxDynError> {
        self.naive().encode(buf)
    }
}

impl<'r, DB: Database> Decode<'r, DB> for BookingDate
where
    NaiveDate: Decode<'r, DB>,
{
    fn decode(value: <DB as Database>::ValueRef<'r>) -> Result<Self, BoxDynError> {
        <NaiveDate as Decode<'r, DB>>::decode(value).map(BookingDate::from_naive)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::sqlite::SqlitePoolOptions;

    #[tokio::test]
    async fn typed_values_round_trip_and_bad_rows_do_not_decode() {
        let pool = SqlitePoolOptions::new()
            .connect("sqlite::memory:")
            .await
            .expect("in-memory SQLite");
        let user = UserId::parse("user_alice").expect("user");
        let date = BookingDate::parse("2031-02-28").expect("date");
        let (u, d, k): (UserId, BookingDate, KeyKind) = sqlx::query_as("SELECT $1, $2, $3")
            .bind(&user)
            .bind(date)
            .bind(KeyKind::Derived)
            .fetch_one(&pool)
            .await
            .expect("round trip");
        assert_eq!((u, d, k), (user, date, KeyKind::Derived));

        let bad_user = sqlx::query_scalar::<_, UserId>("SELECT 'has space'")
            .fetch_one(&pool)
            .await;
        assert!(bad_user.is_err(), "a user id no request could send");
        let bad_kind = sqlx::query_scalar::<_, KeyKind>("SELECT 'global'")
            .fetch_one(&pool)
            .await;
        assert!(bad_kind.is_err(), "an unknown key kind");
        let bad_resource = sqlx::query_scalar::<_, ResourceId>("SELECT ''")
            .fetch_one(&pool)
            .await;
        assert!(bad_resource.is_err(), "an empty resource id");
    }
}
