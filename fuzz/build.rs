//! Empty: present only so that the `cc` build-dependency (with its `parallel` feature) joins the build graph
//! and libfuzzer-sys compiles libFuzzer on every core.
fn main() {}
