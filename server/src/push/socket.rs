//! The sockets a session runs on: a byte stream that can be reset, and for plain TCP one
//! the hub may also write into, through the same registration (no second descriptor).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// A connection's socket: a byte stream that can be reset.
pub trait Socket: AsyncRead + AsyncWrite + Unpin + 'static {
    /// Makes the coming close a reset, so nothing unsent lingers in the kernel.
    fn reset_on_close(&self);

    /// A handle the hub may write whole frames into while nothing is queued (a plain TCP
    /// socket; not TLS, whose state lives in the stream).
    fn direct(&self) -> Option<Arc<TcpStream>> {
        None
    }
}

/// What an upgraded connection becomes for its session.
pub trait Upgraded: AsyncRead + AsyncWrite + Unpin + 'static {
    /// The socket the session runs on.
    type Session: Socket;
    fn into_session(self) -> Self::Session;
}

impl Upgraded for TcpStream {
    type Session = SharedTcp;
    fn into_session(self) -> SharedTcp {
        SharedTcp(Arc::new(self))
    }
}

impl Upgraded for actix_tls::accept::rustls_0_23::TlsStream<TcpStream> {
    type Session = Self;
    fn into_session(self) -> Self {
        self
    }
}

impl Socket for actix_tls::accept::rustls_0_23::TlsStream<TcpStream> {
    fn reset_on_close(&self) {
        reset(self.get_ref().0);
    }
}

fn reset(tcp: &TcpStream) {
    let _ = socket2::SockRef::from(tcp).set_linger(Some(Duration::ZERO));
}

/// A TCP stream shared between its session (reading and writing, as any stream) and the
/// hub (which writes a whole frame with `try_write` while nothing is queued).
pub struct SharedTcp(Arc<TcpStream>);

impl Socket for SharedTcp {
    fn reset_on_close(&self) {
        reset(&self.0);
    }

    fn direct(&self) -> Option<Arc<TcpStream>> {
        Some(self.0.clone())
    }
}

impl AsyncRead for SharedTcp {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            ready!(self.0.poll_read_ready(cx))?;
            match self.0.try_read(buf.initialize_unfilled()) {
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => continue,
                Err(err) => return Poll::Ready(Err(err)),
            }
        }
    }
}

impl AsyncWrite for SharedTcp {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.0.poll_write_ready(cx))?;
            match self.0.try_write(buf) {
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => continue,
                done => return Poll::Ready(done),
            }
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.0.poll_write_ready(cx))?;
            match self.0.try_write_vectored(bufs) {
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => continue,
                done => return Poll::Ready(done),
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(socket2::SockRef::from(&*self.0).shutdown(std::net::Shutdown::Write))
    }
}
