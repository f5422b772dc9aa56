//! The WSGI environ of one request, built from a parsed request head.
//!
//! Cheap by construction: every key is a str interned once per interpreter, the constant entries
//! live in a template dict that is copied per request (a C-level dict copy), and values are made
//! straight from slices of the connection's read buffer (no intermediate copy of header bytes).
//! Header names that contain `_` are dropped: mapping them onto `HTTP_X_Y` would let a client
//! spoof the hyphenated header past a proxy that only checks `X-Y`.

use std::net::{IpAddr, SocketAddr};

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyString, PyTuple};

use super::strings::latin1;
use crate::http::{self, Client, Request, Version};

/// Request headers common enough to have their environ key made once.
const COMMON_HEADERS: &[&str] = &[
    "host",
    "user-agent",
    "accept",
    "accept-encoding",
    "accept-language",
    "connection",
    "cookie",
    "referer",
    "cache-control",
    "authorization",
    "origin",
    "pragma",
    "upgrade-insecure-requests",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-real-ip",
    "x-request-id",
    "if-none-match",
    "if-modified-since",
    "sec-fetch-site",
    "sec-fetch-mode",
    "sec-fetch-dest",
    "sec-fetch-user",
    "dnt",
    "te",
];

/// A complete request body, as the app's `wsgi.input` will read it.
pub enum Input<'a> {
    /// Bytes in memory (io.BytesIO).
    Bytes(&'a [u8]),
    /// An unlinked temporary file positioned at 0 (a buffered binary file).
    File(std::fs::File),
}

/// What every request of one worker shares.
pub struct EnvironSettings {
    pub script_name: String,
    pub multiprocess: bool,
    /// `--threads N > 1`: the app may be called from several threads at once.
    pub multithread: bool,
    /// SERVER_NAME and SERVER_PORT when a request has no Host header.
    pub bound: SocketAddr,
}

/// Per-interpreter cache: interned keys, common values and the template dict.
pub struct EnvironBuilder {
    template: Py<PyDict>,
    k_method: Py<PyString>,
    k_path_info: Py<PyString>,
    k_query: Py<PyString>,
    k_raw_uri: Py<PyString>,
    k_protocol: Py<PyString>,
    k_server_name: Py<PyString>,
    k_server_port: Py<PyString>,
    k_remote_addr: Py<PyString>,
    k_remote_port: Py<PyString>,
    k_url_scheme: Py<PyString>,
    k_content_type: Py<PyString>,
    k_content_length: Py<PyString>,
    k_input: Py<PyString>,
    v_http10: Py<PyString>,
    v_http11: Py<PyString>,
    v_port80: Py<PyString>,
    v_port443: Py<PyString>,
    v_https: Py<PyString>,
    methods: Vec<(&'static str, Py<PyString>)>,
    headers: Vec<(&'static str, Py<PyString>)>,
    bytes_io: Py<PyAny>,
    open: Py<PyAny>,
    script_name: Vec<u8>,
    bound_name: Py<PyString>,
    bound_port: Py<PyString>,
    /// Scratch for percent-decoding PATH_INFO and building uncommon header keys.
    scratch: Vec<u8>,
    last_remote: Option<(IpAddr, Py<PyString>)>,
}

fn interned(py: Python<'_>, s: &str) -> Py<PyString> {
    PyString::intern(py, s).unbind()
}

/// `HTTP_` + the header name upper-cased with `-` mapped to `_`.
fn header_key(name: &str, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(b"HTTP_");
    out.extend(name.bytes().map(|b| {
        if b == b'-' {
            b'_'
        } else {
            b.to_ascii_uppercase()
        }
    }));
}

impl EnvironBuilder {
    /// `file_wrapper` is the bootstrap's FileWrapper class, offered as `wsgi.file_wrapper`.
    pub fn new(
        py: Python<'_>,
        settings: &EnvironSettings,
        file_wrapper: &Bound<'_, PyAny>,
    ) -> PyResult<Self> {
        let sys = py.import("sys")?;
        let template = PyDict::new(py);
        let version = PyTuple::new(py, [1, 0])?;
        template.set_item("wsgi.version", version)?;
        template.set_item("wsgi.url_scheme", "http")?;
        template.set_item("wsgi.errors", sys.getattr("stderr")?)?;
        template.set_item("wsgi.multithread", PyBool::new(py, settings.multithread))?;
        template.set_item("wsgi.multiprocess", PyBool::new(py, settings.multiprocess))?;
        template.set_item("wsgi.run_once", PyBool::new(py, false))?;
        template.set_item("wsgi.input_terminated", PyBool::new(py, true))?;
        template.set_item("wsgi.file_wrapper", file_wrapper)?;
        template.set_item("SCRIPT_NAME", settings.script_name.as_str())?;
        let methods = ["GET", "POST", "HEAD", "PUT", "DELETE", "PATCH", "OPTIONS"]
            .into_iter()
            .map(|m| (m, interned(py, m)))
            .collect();
        let mut key = Vec::new();
        let headers = COMMON_HEADERS
            .iter()
            .map(|h| {
                header_key(h, &mut key);
                (*h, interned(py, std::str::from_utf8(&key).expect("ASCII")))
            })
            .collect();
        let bound_name = match settings.bound.ip() {
            std::net::IpAddr::V4(ip) => ip.to_string(),
            std::net::IpAddr::V6(ip) => format!("[{ip}]"),
        };
        Ok(EnvironBuilder {
            template: template.unbind(),
            k_method: interned(py, "REQUEST_METHOD"),
            k_path_info: interned(py, "PATH_INFO"),
            k_query: interned(py, "QUERY_STRING"),
            k_raw_uri: interned(py, "RAW_URI"),
            k_protocol: interned(py, "SERVER_PROTOCOL"),
            k_server_name: interned(py, "SERVER_NAME"),
            k_server_port: interned(py, "SERVER_PORT"),
            k_remote_addr: interned(py, "REMOTE_ADDR"),
            k_remote_port: interned(py, "REMOTE_PORT"),
            k_url_scheme: interned(py, "wsgi.url_scheme"),
            k_content_type: interned(py, "CONTENT_TYPE"),
            k_content_length: interned(py, "CONTENT_LENGTH"),
            k_input: interned(py, "wsgi.input"),
            v_http10: interned(py, "HTTP/1.0"),
            v_http11: interned(py, "HTTP/1.1"),
            v_port80: interned(py, "80"),
            v_port443: interned(py, "443"),
            v_https: interned(py, "https"),
            methods,
            headers,
            bytes_io: py.import("io")?.getattr("BytesIO")?.unbind(),
            open: py.import("io")?.getattr("open")?.unbind(),
            script_name: settings.script_name.as_bytes().to_vec(),
            bound_name: PyString::new(py, &bound_name).unbind(),
            bound_port: PyString::new(py, &settings.bound.port().to_string()).unbind(),
            scratch: Vec::with_capacity(256),
            last_remote: None,
        })
    }

    /// Builds the environ of `req`, whose body (already complete) is `body`, from `client`
    /// (REMOTE_ADDR, REMOTE_PORT, wsgi.url_scheme).
    pub fn build<'py>(
        &mut self,
        py: Python<'py>,
        req: &Request<'_, '_>,
        body: Input<'_>,
        client: Client,
    ) -> PyResult<Bound<'py, PyDict>> {
        let env = self.template.bind(py).copy()?;
        let method = match self.methods.iter().find(|(m, _)| *m == req.method) {
            Some((_, s)) => s.bind(py).clone(),
            None => PyString::new(py, req.method),
        };
        env.set_item(&self.k_method, method)?;
        let path_info = self.path_info(py, req.path);
        env.set_item(&self.k_path_info, path_info)?;
        env.set_item(&self.k_query, latin1(py, req.query))?;
        env.set_item(&self.k_raw_uri, latin1(py, req.target))?;
        let protocol = match req.version {
            Version::Http10 => &self.v_http10,
            Version::Http11 => &self.v_http11,
        };
        env.set_item(&self.k_protocol, protocol)?;
        match req.host {
            Some(host) => {
                let (name, port) = http::split_host(host);
                env.set_item(&self.k_server_name, latin1(py, name))?;
                match port {
                    Some(port) => env.set_item(&self.k_server_port, latin1(py, port))?,
                    // The scheme's default port, as gunicorn.
                    None if client.https => env.set_item(&self.k_server_port, &self.v_port443)?,
                    None => env.set_item(&self.k_server_port, &self.v_port80)?,
                }
            }
            None => {
                env.set_item(&self.k_server_name, &self.bound_name)?;
                env.set_item(&self.k_server_port, &self.bound_port)?;
            }
        }
        // A unix-domain peer has no address: REMOTE_ADDR is empty and REMOTE_PORT absent, as
        // gunicorn does; an address from X-Forwarded-For has no port.
        match client.addr {
            Some(ip) => {
                let remote_addr = self.remote_addr(py, ip);
                env.set_item(&self.k_remote_addr, remote_addr)?;
            }
            None => env.set_item(&self.k_remote_addr, PyString::intern(py, ""))?,
        }
        if let Some(port) = client.port {
            self.scratch.clear();
            http::response::push_decimal(&mut self.scratch, u64::from(port));
            // Digits are ASCII.
            let port = std::str::from_utf8(&self.scratch).unwrap_or("0");
            env.set_item(&self.k_remote_port, PyString::new(py, port))?;
        }
        if client.https {
            env.set_item(&self.k_url_scheme, &self.v_https)?;
        }
        self.set_headers(py, &env, req)?;
        let input = match body {
            Input::Bytes(bytes) => self
                .bytes_io
                .bind(py)
                .call1((pyo3::types::PyBytes::new(py, bytes),))?,
            Input::File(file) => self.open_file(py, file)?,
        };
        env.set_item(&self.k_input, input)?;
        Ok(env)
    }

    /// REMOTE_ADDR, with the last address's str reused (clients behind a proxy, or the same
    /// client over many requests, share one address).
    fn remote_addr<'py>(&mut self, py: Python<'py>, ip: IpAddr) -> Bound<'py, PyString> {
        match &self.last_remote {
            Some((last, s)) if *last == ip => s.bind(py).clone(),
            _ => {
                let s = PyString::new(py, &ip.to_string());
                self.last_remote = Some((ip, s.clone().unbind()));
                s
            }
        }
    }

    /// A spooled body as a binary file object (io.BufferedReader) that owns the descriptor.
    fn open_file<'py>(&self, py: Python<'py>, file: std::fs::File) -> PyResult<Bound<'py, PyAny>> {
        use std::os::fd::{FromRawFd, IntoRawFd};
        let fd = file.into_raw_fd();
        match self.open.bind(py).call1((fd, "rb")) {
            Ok(reader) => Ok(reader),
            Err(err) => {
                // SAFETY: open() failed, so Python did not take the descriptor: it is still ours
                // (from into_raw_fd above) and is closed exactly once, here.
                drop(unsafe { std::fs::File::from_raw_fd(fd) });
                Err(err)
            }
        }
    }

    /// PATH_INFO: the path percent-decoded, then latin-1, with SCRIPT_NAME removed from its start.
    fn path_info<'py>(&mut self, py: Python<'py>, raw: &[u8]) -> Bound<'py, PyString> {
        let path: &[u8] = if http::percent::needs_decoding(raw) {
            self.scratch.clear();
            http::percent::percent_decode_into(raw, &mut self.scratch);
            &self.scratch
        } else {
            raw
        };
        let sn = self.script_name.as_slice();
        let path = match path.strip_prefix(sn) {
            Some(rest) if !sn.is_empty() && (rest.is_empty() || rest[0] == b'/') => rest,
            _ => path,
        };
        latin1(py, path)
    }

    fn set_headers(
        &mut self,
        py: Python<'_>,
        env: &Bound<'_, PyDict>,
        req: &Request<'_, '_>,
    ) -> PyResult<()> {
        for header in req.headers {
            let name = header.name;
            if name.contains('_') {
                continue;
            }
            let key: Bound<'_, PyString> = if name.eq_ignore_ascii_case("content-type") {
                self.k_content_type.bind(py).clone()
            } else if name.eq_ignore_ascii_case("content-length") {
                // The parser accepts repeats only when they agree: keep one.
                env.set_item(&self.k_content_length, latin1(py, header.value))?;
                continue;
            } else if let Some((_, k)) = self
                .headers
                .iter()
                .find(|(h, _)| h.len() == name.len() && h.eq_ignore_ascii_case(name))
            {
                k.bind(py).clone()
            } else {
                header_key(name, &mut self.scratch);
                // Header names are tokens (ASCII), so the key is valid UTF-8.
                PyString::new(py, std::str::from_utf8(&self.scratch).unwrap_or("HTTP_"))
            };
            let value = latin1(py, header.value);
            match env.get_item(&key)? {
                Some(previous) => {
                    let joined = previous.cast_into::<PyString>()?.add(", ")?.add(value)?;
                    env.set_item(key, joined)?;
                }
                None => env.set_item(key, value)?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::header_key;

    #[test]
    fn header_keys() {
        let mut out = Vec::new();
        header_key("x-forwarded-for", &mut out);
        assert_eq!(out, b"HTTP_X_FORWARDED_FOR");
        header_key("Accept", &mut out);
        assert_eq!(out, b"HTTP_ACCEPT");
    }
}
