//! A connection to the master that survives losing it: [`Session`] connects on first use, drops a
//! broken connection, and connects again on the next call. Before reusing an idle connection it
//! checks whether the master closed it meanwhile (a restart), and if so connects afresh.
//!
//! Requests are never retried automatically: a submit whose reply was lost may have been accepted,
//! and sending it again would run the job twice. The caller reports the failure; the user decides.

use std::time::Duration;

use super::client::{Client, ClientError};
use super::error::CliError;
use titan_auth::{KeyLookup, Want};

/// How long any reply may take, except `wait`'s, which sets its own bound. A master that answers
/// nothing for this long is treated as gone rather than leaving the CLI hanging.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Session {
    addr: String,
    /// Where the client key comes from; read at each connection, so a key handed out anew
    /// (rotated) is picked up by a REPL that reconnects.
    keys: KeyLookup,
    client: Option<Client>,
}

impl Session {
    /// A session that will connect to `addr` (`HOST:PORT`) when first used, proving the key
    /// `keys` finds.
    pub fn new(addr: impl Into<String>, keys: KeyLookup) -> Session {
        Session {
            addr: addr.into(),
            keys,
            client: None,
        }
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Whether a connection is open (it may still turn out to be broken on the next call).
    pub fn is_connected(&self) -> bool {
        self.client.is_some()
    }

    /// Makes sure a connection is open: keeps the current one unless the master has closed it,
    /// else connects. `Ok(true)` when a new connection was opened.
    pub fn connect(&mut self) -> Result<bool, CliError> {
        self.open().map(|(_, new)| new)
    }

    fn open(&mut self) -> Result<(&mut Client, bool), CliError> {
        let (client, new) = match self.client.take() {
            Some(client) if !client.peer_closed() => (client, false),
            _ => {
                let keys = &self.keys;
                let credential = || Ok(keys.credential(Want::Client)?);
                let client = Client::connect_with_key(&self.addr, credential)?;
                client
                    .set_timeout(Some(REPLY_TIMEOUT))
                    .map_err(ClientError::Io)?;
                (client, true)
            }
        };
        Ok((self.client.insert(client), new))
    }

    /// Runs one request; a connection-level failure closes the connection so that the next call
    /// opens a fresh one.
    pub fn call<T>(
        &mut self,
        request: impl FnOnce(&mut Client) -> Result<T, ClientError>,
    ) -> Result<T, CliError> {
        let (client, _) = self.open()?;
        let result = request(client).map_err(CliError::from);
        if let Err(e) = &result {
            if e.is_connection_lost() {
                self.client = None;
            }
        }
        result
    }

    /// Like [`Session::call`], with replies allowed to take `reply_timeout` instead of
    /// [`REPLY_TIMEOUT`].
    pub fn call_with_timeout<T>(
        &mut self,
        reply_timeout: Duration,
        request: impl FnOnce(&mut Client) -> Result<T, ClientError>,
    ) -> Result<T, CliError> {
        self.call(|client| {
            client.set_timeout(Some(reply_timeout))?;
            let result = request(client);
            client.set_timeout(Some(REPLY_TIMEOUT))?;
            result
        })
    }
}
