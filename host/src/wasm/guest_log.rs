//! The guest's stdout and stderr: captured line by line and forwarded into the host's
//! `tracing` output, tagged with the agent's name. Nothing reaches the real stdio.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

/// Longest line kept; the rest of a longer line is cut.
const MAX_LINE: usize = 4096;
/// Lines of one call kept for error messages.
const RECENT_LINES: usize = 4;

/// Which guest stream a [`GuestLog`] captures.
#[derive(Clone, Copy)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// A line-buffering sink that forwards each line to `tracing`.
#[derive(Clone)]
pub struct GuestLog {
    agent: Arc<str>,
    stream: Stream,
    pending: Arc<Mutex<Vec<u8>>>,
    recent: Arc<Mutex<Vec<String>>>,
}

impl GuestLog {
    pub fn new(agent: Arc<str>, stream: Stream) -> Self {
        Self {
            agent,
            stream,
            pending: Arc::default(),
            recent: Arc::default(),
        }
    }

    fn emit(&self, line: &[u8]) {
        let text = String::from_utf8_lossy(line);
        let text = text.trim_end();
        let mut recent = self.recent.lock().expect("guest log lock");
        if recent.len() < RECENT_LINES {
            recent.push(text.to_string());
        }
        match self.stream {
            Stream::Stdout => tracing::info!(target: "guest", agent = %self.agent, "{text}"),
            Stream::Stderr => tracing::warn!(target: "guest", agent = %self.agent, "{text}"),
        }
    }

    fn push(&self, bytes: &[u8]) {
        let mut pending = self.pending.lock().expect("guest log lock");
        for chunk in bytes.split_inclusive(|&b| b == b'\n') {
            if pending.len() < MAX_LINE {
                let room = MAX_LINE - pending.len();
                pending.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            if chunk.ends_with(b"\n") {
                self.emit(&pending);
                pending.clear();
            }
        }
    }

    /// Forgets the lines kept by [`GuestLog::take_recent`]; called before each guest call.
    pub fn clear_recent(&self) {
        self.recent.lock().expect("guest log lock").clear();
    }

    /// The first lines written since [`GuestLog::clear_recent`] (a panic message, typically).
    pub fn take_recent(&self) -> Vec<String> {
        std::mem::take(&mut *self.recent.lock().expect("guest log lock"))
    }

    /// Forwards a final unterminated line, if any.
    pub fn flush_partial(&self) {
        let mut pending = self.pending.lock().expect("guest log lock");
        if !pending.is_empty() {
            self.emit(&pending);
            pending.clear();
        }
    }
}

impl IsTerminal for GuestLog {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestLog {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for GuestLog {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        self.push(&bytes);
        Ok(())
    }
    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }
    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(64 * 1024)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for GuestLog {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for GuestLog {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.push(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}
