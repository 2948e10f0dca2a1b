//! The roles a key grants and what each may do. The master checks every request against its
//! connection's role ([`Role::permits`]); a refusal says which key the connection used, what
//! that key may do, and which key would do.

use std::fmt;

/// The role a connection proved with its key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// A worker: registers, heartbeats and reports on the jobs it was given.
    Worker,
    /// A client: submits, cancels, stops and reads.
    Client,
    /// A read-only client (dashboards, monitoring): reads.
    ReadOnly,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Worker, Role::Client, Role::ReadOnly];

    /// The byte that names the role on the wire.
    pub fn to_wire(self) -> u8 {
        match self {
            Role::Worker => 1,
            Role::Client => 2,
            Role::ReadOnly => 3,
        }
    }

    pub fn from_wire(byte: u8) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.to_wire() == byte)
    }

    /// The role's name in the access file and in `TITAN_KEY=ROLE:HEX`.
    pub fn name(self) -> &'static str {
        match self {
            Role::Worker => "worker",
            Role::Client => "client",
            Role::ReadOnly => "read-only",
        }
    }

    /// A role by its name (`read_only` and `readonly` are accepted for `read-only`).
    pub fn from_name(name: &str) -> Option<Role> {
        match name.trim().to_ascii_lowercase().as_str() {
            "worker" => Some(Role::Worker),
            "client" => Some(Role::Client),
            "read-only" | "read_only" | "readonly" => Some(Role::ReadOnly),
            _ => None,
        }
    }

    /// What the role may do, for people.
    fn grants(self) -> &'static str {
        match self {
            Role::Worker => "register, heartbeat and report",
            Role::Client => "submit, cancel, stop and read",
            Role::ReadOnly => "read (stats, workers, status, jobs, logs, wait)",
        }
    }

    /// Whether a connection of this role may perform `op`; the refusal says why not.
    pub fn permits(self, op: Operation) -> Result<(), Refusal> {
        let allowed = match op {
            Operation::Ping => true,
            Operation::Register | Operation::Heartbeat | Operation::Report => self == Role::Worker,
            Operation::Submit | Operation::Cancel | Operation::Stop => self == Role::Client,
            Operation::Read(_) => self != Role::Worker,
        };
        if allowed {
            Ok(())
        } else {
            Err(Refusal { role: self, op })
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Something a connection asks the master to do, as far as roles are concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    Ping,
    Register,
    Heartbeat,
    /// A job started, finished, or a service became ready.
    Report,
    Submit,
    Cancel,
    Stop,
    Read(ReadOp),
}

/// The reads (what a read-only key may do).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadOp {
    Stats,
    Workers,
    Status,
    Jobs,
    Logs,
    Wait,
}

impl Operation {
    /// The operation as the refusal names it ("not cancel").
    fn verb(self) -> &'static str {
        match self {
            Operation::Ping => "ping",
            Operation::Register => "register",
            Operation::Heartbeat => "heartbeat",
            Operation::Report => "report",
            Operation::Submit => "submit",
            Operation::Cancel => "cancel",
            Operation::Stop => "stop",
            Operation::Read(ReadOp::Stats) => "read stats",
            Operation::Read(ReadOp::Workers) => "list workers",
            Operation::Read(ReadOp::Status) => "read a job's status",
            Operation::Read(ReadOp::Jobs) => "list jobs",
            Operation::Read(ReadOp::Logs) => "read logs",
            Operation::Read(ReadOp::Wait) => "wait for jobs",
        }
    }

    /// The keys that may do it.
    fn needs(self) -> &'static str {
        match self {
            Operation::Ping => "any key",
            Operation::Register | Operation::Heartbeat | Operation::Report => "a worker key",
            Operation::Submit | Operation::Cancel | Operation::Stop => "a client key",
            Operation::Read(_) => "a client or read-only key",
        }
    }
}

/// A request refused for its connection's role.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub role: Role,
    pub op: Operation,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "this connection authenticated with the {} key: it may {}, not {}; use {}",
            self.role,
            self.role.grants(),
            self.op.verb(),
            self.op.needs()
        )
    }
}

impl std::error::Error for Refusal {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_role_may_do_its_own_operations_only() {
        use Operation::*;
        let reads = [
            ReadOp::Stats,
            ReadOp::Workers,
            ReadOp::Status,
            ReadOp::Jobs,
            ReadOp::Logs,
            ReadOp::Wait,
        ];
        for role in Role::ALL {
            assert!(role.permits(Ping).is_ok(), "{role} pings");
            let worker_ops = [Register, Heartbeat, Report];
            for op in worker_ops {
                assert_eq!(
                    role.permits(op).is_ok(),
                    role == Role::Worker,
                    "{role} {op:?}"
                );
            }
            for op in [Submit, Cancel, Stop] {
                assert_eq!(
                    role.permits(op).is_ok(),
                    role == Role::Client,
                    "{role} {op:?}"
                );
            }
            for read in reads {
                let ok = role.permits(Operation::Read(read)).is_ok();
                assert_eq!(ok, role != Role::Worker, "{role} {read:?}");
            }
        }
    }

    #[test]
    fn a_refusal_names_the_role_what_it_may_do_and_the_key_to_use() {
        let refusal = Role::ReadOnly.permits(Operation::Cancel).unwrap_err();
        assert_eq!(
            refusal.to_string(),
            "this connection authenticated with the read-only key: it may read (stats, workers, \
             status, jobs, logs, wait), not cancel; use a client key"
        );
        let refusal = Role::Worker
            .permits(Operation::Read(ReadOp::Stats))
            .unwrap_err();
        assert_eq!(
            refusal.to_string(),
            "this connection authenticated with the worker key: it may register, heartbeat and \
             report, not read stats; use a client or read-only key"
        );
        let refusal = Role::Client.permits(Operation::Register).unwrap_err();
        assert!(refusal
            .to_string()
            .ends_with("not register; use a worker key"));
    }

    #[test]
    fn roles_round_trip_through_their_byte_and_name() {
        for role in Role::ALL {
            assert_eq!(Role::from_wire(role.to_wire()), Some(role));
            assert_eq!(Role::from_name(role.name()), Some(role));
        }
        assert_eq!(Role::from_wire(0), None);
        assert_eq!(Role::from_name("READ_ONLY"), Some(Role::ReadOnly));
        assert_eq!(Role::from_name("admin"), None);
    }
}
