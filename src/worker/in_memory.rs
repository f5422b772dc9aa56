//! A real worker (own-GIL subinterpreter, the app, the batching loop) over the in-memory
//! transport: request bytes in, response bytes out, no sockets. What the Rust tests and the
//! criterion benches drive.

use std::net::SocketAddr;
use std::sync::{Arc, Once};

use pyo3::Python;

use super::{AccessLog, Control, Limits, Stats, Worker};
use crate::io::{ConnId, Event, Memory, Transport};
use crate::wsgi::{self, AppSettings, EnvironSettings, SubInterpreter, Wsgi};

static EMBEDDED: Once = Once::new();

/// Starts the embedded main interpreter once per process and leaves it detached (for binaries
/// that embed Python: tests and benches; the server itself runs inside a Python process).
pub fn init_embedded_python() {
    EMBEDDED.call_once(|| {
        Python::initialize();
        Python::attach(wsgi::prepare_main_interpreter);
    });
}

/// A worker serving one app over [`Memory`], attached to its interpreter.
pub struct InMemoryWorker<'py> {
    py: Python<'py>,
    worker: Worker<Memory>,
    events: Vec<Event>,
}

impl InMemoryWorker<'_> {
    /// Opens a connection from 127.0.0.1:40000 and lets the worker accept it.
    pub fn connect(&mut self) -> ConnId {
        let conn = self
            .worker
            .transport()
            .connect(SocketAddr::from(([127, 0, 0, 1], 40000)));
        self.rounds(1);
        conn
    }

    /// Runs `n` rounds of the worker loop (the in-memory transport never blocks).
    pub fn rounds(&mut self, n: usize) {
        for _ in 0..n {
            self.worker
                .round(Some(self.py), &mut self.events)
                .expect("in-memory rounds do not fail");
        }
    }

    /// Sends `bytes`, runs rounds until the responses are out, returns everything sent back.
    pub fn exchange(&mut self, conn: ConnId, bytes: &[u8]) -> Vec<u8> {
        self.transport().push_input(conn, bytes);
        self.rounds(12);
        self.transport().take_output(conn)
    }

    /// Asks for a graceful stop, as SIGTERM does (seen at the next round).
    pub fn begin_graceful_stop(&mut self) {
        self.worker
            .control
            .drain
            .store(true, std::sync::atomic::Ordering::Release);
        self.worker.transport().waker().wake();
    }

    /// Whether the worker's loop would go on (false once stopped with no connection left).
    pub fn running(&mut self) -> bool {
        self.worker
            .round(Some(self.py), &mut self.events)
            .expect("in-memory rounds do not fail")
    }

    /// Logs every answered request from now on.
    pub fn set_access_log(&mut self, log: AccessLog) {
        self.worker.access_log = Some(log);
    }

    /// Counts every answered request in `stats` from now on (as `--metrics-bind` does).
    pub fn set_stats(&mut self, stats: Stats) {
        self.worker.stats = Some(stats);
    }

    pub fn transport(&mut self) -> &mut Memory {
        self.worker.transport()
    }
}

/// Runs `f` with a worker serving `app` (MODULE:APP) from the module source `module_source`,
/// written to a temporary directory, in a fresh subinterpreter on a thread of its own; the
/// interpreter is ended afterwards.
pub fn with_in_memory_worker(
    module_source: &str,
    app: &str,
    f: impl FnOnce(&mut InMemoryWorker<'_>) + Send,
) {
    let dir = std::env::temp_dir().join(format!(
        "ringwsgi-in-memory-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::create_dir_all(&dir).expect("temporary directory");
    let (module, _) = app.split_once(':').expect("MODULE:APP");
    std::fs::write(dir.join(format!("{module}.py")), module_source).expect("write the app module");
    let settings = AppSettings {
        spec: app.to_owned(),
        sys_path: vec![dir.to_string_lossy().into_owned()],
        environ: EnvironSettings {
            script_name: String::new(),
            multiprocess: false,
            multithread: false,
            bound: SocketAddr::from(([127, 0, 0, 1], 8000)),
        },
    };
    with_subinterpreter(|py| {
        let wsgi = Wsgi::load(py, &settings).expect("the app loads");
        let worker = Worker::new(
            Memory::new(),
            wsgi,
            Limits::default(),
            Arc::new(Control::default()),
        );
        let mut harness = InMemoryWorker {
            py,
            worker,
            events: Vec::new(),
        };
        f(&mut harness);
        harness.worker.into_parts().0.release(py);
    });
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs `f` attached to a fresh own-GIL subinterpreter on a thread of its own (as a worker
/// thread does), then ends the interpreter. Python objects `f` made must be gone when it returns.
pub fn with_subinterpreter(f: impl FnOnce(Python<'_>) + Send) {
    init_embedded_python();
    std::thread::scope(|s| {
        s.spawn(|| {
            let interpreter = SubInterpreter::new().expect("an own-GIL subinterpreter");
            interpreter.attach(f);
            interpreter.end();
        });
    });
}
