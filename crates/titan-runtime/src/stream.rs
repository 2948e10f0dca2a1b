//! A glommio TCP stream shared by a reader and a writer task on one executor.
//!
//! glommio keeps separate read and write readiness per stream, so a read and a write may be in
//! flight at once. Each side borrows the stream only inside a single `poll`, so the borrows never
//! overlap (one thread, and polls do not nest).

use std::cell::RefCell;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::rc::Rc;

use futures_lite::{AsyncRead, AsyncWrite};
use glommio::net::TcpStream;

use super::outbox::Outbox;

pub type SharedStream = Rc<RefCell<TcpStream>>;

pub async fn read_some(stream: &SharedStream, buf: &mut [u8]) -> io::Result<usize> {
    poll_fn(|cx| Pin::new(&mut *stream.borrow_mut()).poll_read(cx, buf)).await
}

pub async fn write_all(stream: &SharedStream, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        let n = poll_fn(|cx| Pin::new(&mut *stream.borrow_mut()).poll_write(cx, buf)).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        buf = &buf[n..];
    }
    Ok(())
}

pub async fn close(stream: &SharedStream) -> io::Result<()> {
    poll_fn(|cx| Pin::new(&mut *stream.borrow_mut()).poll_close(cx)).await
}

/// A reply buffer that grew past this (a large frame) is released after it was written.
const OUT_BUF_SHRINK_ABOVE: usize = 256 * 1024;

/// Writes whatever the outbox has ready, one write per batch, until the outbox closes. A write
/// error closes the outbox (the reader notices through `Outbox::closed`).
pub async fn write_loop(stream: SharedStream, outbox: Rc<Outbox>) {
    let mut buf = Vec::new();
    loop {
        outbox.take_ready(&mut buf);
        if buf.is_empty() {
            if outbox.is_closing() {
                return;
            }
            outbox.writable.wait().await;
            continue;
        }
        if write_all(&stream, &buf).await.is_err() {
            outbox.close();
            return;
        }
        buf.clear();
        if buf.capacity() > OUT_BUF_SHRINK_ABOVE {
            buf = Vec::new();
        }
    }
}
