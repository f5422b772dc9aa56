//! Build script: exposes PyO3's `Py_3_X` cfgs (subinterpreter code is compiled only for 3.13+)
//! and, when the crate is linked against libpython (cargo test, cargo bench), records an rpath to
//! it so those binaries run without LD_LIBRARY_PATH. The extension module maturin builds does not
//! link libpython, so nothing is added there.
fn main() {
    pyo3_build_config::use_pyo3_cfgs();
    pyo3_build_config::add_libpython_rpath_link_args();
    println!("cargo:rerun-if-env-changed=PYO3_PYTHON");
}
