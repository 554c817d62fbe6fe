//! One generic `AsyncTask` for every heavy call: runs a closure on libuv's pool, off the JS thread.

use napi::bindgen_prelude::{ToNapiValue, TypeName};
use napi::{Env, Task};

use crate::error::guard;

type Job<T> = Box<dyn FnOnce() -> dwcp_hde::Result<T> + Send>;

/// A blocking job whose result `T` is handed to JS when done.
pub struct Work<T> {
    job: Option<Job<T>>,
}

impl<T> Work<T> {
    pub fn new(job: impl FnOnce() -> dwcp_hde::Result<T> + Send + 'static) -> Self {
        Work {
            job: Some(Box::new(job)),
        }
    }
}

impl<T: ToNapiValue + TypeName + Send + 'static> Task for Work<T> {
    type Output = T;
    type JsValue = T;

    fn compute(&mut self) -> napi::Result<T> {
        let job = self
            .job
            .take()
            .ok_or_else(|| napi::Error::from_reason("ERR_NATIVE_PANIC: task ran twice"))?;
        guard(job)
    }

    fn resolve(&mut self, _env: Env, output: T) -> napi::Result<T> {
        Ok(output)
    }
}
