//! Whether a failed REST call's request left this process: the last link of ureq's connector
//! chain wraps every connection (plain or TLS) and notes, for the calling thread, when writing
//! the request failed.
//!
//! The guarantee: ureq writes a request through `Transport::transmit_output`, which writes its
//! bytes completely or fails; a write syscall that fails accepted none of the bytes it was
//! given, and those come after every byte already accepted. So when a `transmit_output` of the
//! request fails, at least the request's last bytes never reached the socket: the server holds
//! at most an incomplete request (headers without the whole `Content-Length` body, or a TLS
//! record it cannot decrypt) and cannot have acted on it. Such a call is *not sent*. A failure
//! while reading the answer, after every write succeeded, proves nothing (the request may have
//! been processed) and stays unknown. With TLS, rustls buffers a write and reports a socket
//! error on the next operation, which is usually the read: those failures stay unknown too,
//! which is the safe side.
//!
//! The calling thread is the one ureq does all its I/O on (the client is blocking), so a
//! thread-local flag set here and read by the caller after the call belongs to that call.

use std::cell::Cell;

use ureq::unversioned::transport::{Buffers, ConnectionDetails, Connector, NextTimeout, Transport};

thread_local! {
    static SEND_FAILED: Cell<bool> = const { Cell::new(false) };
    static CONNECTED: Cell<bool> = const { Cell::new(false) };
}

/// Marks the start of a call on this thread.
pub(crate) fn begin_call() {
    SEND_FAILED.with(|f| f.set(false));
    CONNECTED.with(|f| f.set(false));
}

/// Whether this thread's current call opened a new connection (a pooled one was not reused).
pub(crate) fn connected() -> bool {
    CONNECTED.with(Cell::get)
}

/// Whether writing the request of this thread's current call failed.
pub(crate) fn send_failed() -> bool {
    SEND_FAILED.with(Cell::get)
}

/// The connector that wraps each new connection in a [`Watched`] transport.
#[derive(Debug, Default)]
pub(crate) struct SendWatch;

impl Connector<Box<dyn Transport>> for SendWatch {
    type Out = Box<dyn Transport>;

    fn connect(
        &self,
        _: &ConnectionDetails,
        chained: Option<Box<dyn Transport>>,
    ) -> Result<Option<Self::Out>, ureq::Error> {
        if chained.is_some() {
            CONNECTED.with(|f| f.set(true));
        }
        Ok(chained.map(|t| Box::new(Watched(t)) as Box<dyn Transport>))
    }
}

/// A connection whose failed writes are noted.
#[derive(Debug)]
pub(crate) struct Watched(pub(crate) Box<dyn Transport>);

impl Transport for Watched {
    fn buffers(&mut self) -> &mut dyn Buffers {
        self.0.buffers()
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), ureq::Error> {
        let r = self.0.transmit_output(amount, timeout);
        crate::runtime::hops::stamp(crate::runtime::hops::Hop::FirstByteWritten);
        if r.is_err() {
            SEND_FAILED.with(|f| f.set(true));
        }
        r
    }

    fn maybe_await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
        self.0.maybe_await_input(timeout)
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
        self.0.await_input(timeout)
    }

    fn is_open(&mut self) -> bool {
        self.0.is_open()
    }

    fn is_tls(&self) -> bool {
        self.0.is_tls()
    }
}

#[cfg(test)]
mod tests {
    //! The race this guards against (a reset arriving between ureq's probe of a pooled
    //! connection and the write) cannot be produced on demand over a real socket, so the
    //! transport under the watch is a stand-in whose writes or reads fail when told to.
    use super::*;
    use std::io;
    use ureq::Timeout;
    use ureq::unversioned::transport::LazyBuffers;

    #[derive(Debug)]
    struct Failing {
        buffers: LazyBuffers,
        write_fails: bool,
        read_fails: bool,
    }

    impl Transport for Failing {
        fn buffers(&mut self) -> &mut dyn Buffers {
            &mut self.buffers
        }
        fn transmit_output(&mut self, _: usize, _: NextTimeout) -> Result<(), ureq::Error> {
            if self.write_fails {
                return Err(io::Error::from(io::ErrorKind::BrokenPipe).into());
            }
            Ok(())
        }
        fn await_input(&mut self, _: NextTimeout) -> Result<bool, ureq::Error> {
            if self.read_fails {
                return Err(io::Error::from(io::ErrorKind::ConnectionReset).into());
            }
            Ok(false)
        }
        fn is_open(&mut self) -> bool {
            true
        }
    }

    fn watched(write_fails: bool, read_fails: bool) -> Watched {
        let buffers = LazyBuffers::new(64, 64);
        Watched(Box::new(Failing { buffers, write_fails, read_fails }))
    }

    fn timeout() -> NextTimeout {
        NextTimeout {
            after: std::time::Duration::from_secs(1).into(),
            reason: Timeout::Global,
            per_read: None,
            per_write: None,
        }
    }

    #[test]
    fn only_a_failed_write_of_the_request_marks_the_call_not_sent() {
        begin_call();
        let mut read_fails = watched(false, true);
        assert!(read_fails.transmit_output(10, timeout()).is_ok());
        assert!(read_fails.await_input(timeout()).is_err());
        assert!(!send_failed(), "a failure after the request went out proves nothing");

        begin_call();
        let mut write_fails = watched(true, false);
        assert!(write_fails.transmit_output(10, timeout()).is_err());
        assert!(send_failed());

        begin_call();
        assert!(!send_failed(), "each call starts clean");
        // Another thread's call is its own.
        std::thread::spawn(|| {
            begin_call();
            let _ = watched(true, false).transmit_output(10, timeout());
        })
        .join()
        .unwrap();
        assert!(!send_failed());
    }
}
