//! Hand-made histories for checker tests.

use crate::history::{BookingRow, History, OpKind, Operation, Outcome};

pub const DATE: &str = "2026-12-01";

pub fn created_body(id: &str, user: &str, resource: &str) -> String {
    format!(
        r#"{{"success":true,"message":"Booking created successfully","booking":{{"id":"{id}","userId":"{user}","resourceId":"{resource}","date":"{DATE}","status":"confirmed","createdAt":"2026-11-24T10:00:00.000Z"}}}}"#
    )
}

/// A booking of `room_A` on [`DATE`] as the store's final state holds it;
/// `key` `None` is the server-derived key.
pub fn booking_row(id: &str, user: &str, key: Option<&str>, status: &str) -> BookingRow {
    BookingRow {
        id: id.into(),
        user_id: user.into(),
        resource_id: "room_A".into(),
        date: DATE.into(),
        status: status.into(),
        key_kind: if key.is_some() { "client" } else { "derived" }.into(),
        idem_key: key.map_or_else(|| format!("room_A:{DATE}"), str::to_owned),
    }
}

pub fn already_booked_body(resource: &str) -> String {
    format!(
        r#"{{"type":"/problems/already-booked","title":"Already booked","status":409,"detail":"{resource} is already booked on {DATE}","success":false,"error":"{resource} is already booked on {DATE}","code":"ALREADY_BOOKED"}}"#
    )
}

/// Builds a history one operation at a time, with increasing times.
#[derive(Default)]
pub struct Builder {
    pub history: History,
    clock: f64,
}

impl Builder {
    pub fn new() -> Self {
        Self::default()
    }

    fn push(&mut self, mut op: Operation) -> usize {
        op.index = self.history.ops.len();
        self.clock += 10.0;
        op.invoke_ms = self.clock;
        self.clock += 10.0;
        op.complete_ms = self.clock;
        let index = op.index;
        self.history.ops.push(op);
        index
    }

    fn base(kind: OpKind, user: &str) -> Operation {
        Operation {
            index: 0,
            process: "c0".into(),
            intent: 0,
            attempt: 1,
            kind,
            user: user.into(),
            resource: None,
            date: None,
            key: None,
            booking_id: None,
            replica: None,
            invoke_ms: 0.0,
            complete_ms: 0.0,
            outcome: Outcome::Info,
            status: None,
            code: None,
            body: None,
            canonical: None,
            replayed: false,
            retry_after: true,
            error: None,
        }
    }

    fn create_op(user: &str, resource: &str, key: Option<&str>) -> Operation {
        let mut op = Self::base(OpKind::Create, user);
        op.resource = Some(resource.into());
        op.date = Some(DATE.into());
        op.key = key.map(str::to_owned);
        op
    }

    /// A create answered 201 with booking `id`.
    pub fn created(&mut self, user: &str, resource: &str, key: Option<&str>, id: &str) -> usize {
        let mut op = Self::create_op(user, resource, key);
        op.outcome = Outcome::Ok;
        op.status = Some(201);
        op.body = Some(created_body(id, user, resource));
        self.push(op)
    }

    /// A create answered with an error `code` and `status`.
    pub fn failed(
        &mut self,
        user: &str,
        resource: &str,
        key: Option<&str>,
        status: u16,
        code: &str,
    ) -> usize {
        let mut op = Self::create_op(user, resource, key);
        op.outcome = if status >= 500 {
            Outcome::Info
        } else {
            Outcome::Fail
        };
        op.status = Some(status);
        op.code = Some(code.into());
        op.body = Some(if code == "ALREADY_BOOKED" {
            already_booked_body(resource)
        } else {
            format!(r#"{{"success":false,"status":{status},"code":"{code}"}}"#)
        });
        self.push(op)
    }

    /// A create that timed out: no answer.
    pub fn timed_out(&mut self, user: &str, resource: &str, key: Option<&str>) -> usize {
        let mut op = Self::create_op(user, resource, key);
        op.error = Some("timed out".into());
        self.push(op)
    }

    /// A cancel of `id` with `outcome` (200 when ok).
    pub fn cancel(&mut self, user: &str, id: &str, outcome: Outcome) -> usize {
        let mut op = Self::base(OpKind::Cancel, user);
        op.booking_id = Some(id.into());
        op.outcome = outcome;
        if outcome == Outcome::Ok {
            op.status = Some(200);
            op.body = Some(format!(r#"{{"success":true,"booking":{{"id":"{id}"}}}}"#));
        }
        self.push(op)
    }

    /// A list of `user`'s bookings answered with `bookings` (id, owner, resource, status).
    pub fn list(&mut self, user: &str, bookings: &[(&str, &str, &str, &str)]) -> usize {
        let mut op = Self::base(OpKind::List, user);
        op.outcome = Outcome::Ok;
        op.status = Some(200);
        let items: Vec<String> = bookings
            .iter()
            .map(|(id, owner, resource, status)| {
                format!(
                    r#"{{"id":"{id}","userId":"{owner}","resourceId":"{resource}","date":"{DATE}","status":"{status}"}}"#
                )
            })
            .collect();
        op.body = Some(format!(
            r#"{{"success":true,"bookings":[{}]}}"#,
            items.join(",")
        ));
        self.push(op)
    }

    /// An availability read of `DATE` answered with `free`.
    pub fn availability(&mut self, process: &str, free: &[&str]) -> usize {
        let mut op = Self::base(OpKind::Availability, "");
        op.process = process.into();
        op.date = Some(DATE.into());
        op.outcome = Outcome::Ok;
        op.status = Some(200);
        let free: Vec<String> = free.iter().map(|r| format!("\"{r}\"")).collect();
        op.body = Some(format!(
            r#"{{"success":true,"date":"{DATE}","availableResources":[{}]}}"#,
            free.join(",")
        ));
        self.push(op)
    }

    /// A raw operation, for odd cases.
    pub fn raw(&mut self, f: impl FnOnce(&mut Operation)) -> usize {
        let mut op = Self::base(OpKind::Create, "u");
        f(&mut op);
        self.push(op)
    }

    pub fn row(&mut self, id: &str, user: &str, resource: &str, status: &str, key: Option<&str>) {
        let (kind, key) = match key {
            Some(k) => ("client".to_owned(), k.to_owned()),
            None => ("derived".to_owned(), format!("{resource}:{DATE}")),
        };
        self.history
            .final_state
            .get_or_insert_with(Vec::new)
            .push(BookingRow {
                id: id.into(),
                user_id: user.into(),
                resource_id: resource.into(),
                date: DATE.into(),
                status: status.into(),
                key_kind: kind,
                idem_key: key,
            });
    }

    pub fn empty_store(&mut self) {
        self.history.final_state.get_or_insert_with(Vec::new);
    }
}
