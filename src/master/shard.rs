//! One shard: an accept loop on the shared port and a task per connection.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_lite::future;
use glommio::net::TcpListener;
use tracing::{debug, warn};

use super::connection::{self, ConnectionGuard};
use super::shutdown::Shutdown;
use super::{MasterError, Shared};

/// Pause after a failed accept (e.g. out of file descriptors) before trying again, so the loop
/// does not spin while the condition lasts.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(20);

pub(crate) async fn serve(
    index: usize,
    addr: SocketAddr,
    shared: Shared,
    events: crossbeam_channel::Sender<Result<SocketAddr, MasterError>>,
) {
    let listener = match TcpListener::bind(addr).and_then(|l| l.local_addr().map(|a| (l, a))) {
        Ok((listener, bound)) => {
            let _ = events.send(Ok(bound));
            listener
        }
        Err(e) => {
            let _ = events.send(Err(MasterError::Bind {
                shard: index,
                addr,
                source: e.into(),
            }));
            return;
        }
    };
    let shutdown = Shutdown::default();
    glommio::spawn_local(shutdown.clone().follow(shared.stop.clone())).detach();
    loop {
        let accepted = future::or(async { Some(listener.accept().await) }, async {
            shutdown.wait().await;
            None
        })
        .await;
        match accepted {
            None => break,
            Some(Ok(stream)) => {
                let open = shared.connections.fetch_add(1, Ordering::AcqRel) + 1;
                let guard = ConnectionGuard::new(shared.connections.clone());
                let over_limit = open > shared.config.max_connections;
                let task =
                    connection::serve(stream, shared.clone(), shutdown.clone(), guard, over_limit);
                glommio::spawn_local(task).detach();
            }
            Some(Err(e)) => {
                warn!(shard = index, error = %e, "accept failed");
                glommio::timer::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
    debug!(shard = index, "shard stopped accepting");
}
