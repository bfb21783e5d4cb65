//! The memory cap of one flow instance. A guest that grows past it gets a trap (not a null
//! allocation it might mishandle), and the step's fault says "memory" rather than a vague trap.

/// Refuses memory growth past the cap and remembers that it did.
pub struct MemoryCap {
    cap_bytes: usize,
    /// Set when a growth was refused.
    pub exceeded: bool,
}

impl MemoryCap {
    /// A cap of `cap_bytes` per linear memory.
    pub fn new(cap_bytes: usize) -> Self {
        MemoryCap {
            cap_bytes,
            exceeded: false,
        }
    }
}

impl wasmtime::ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.cap_bytes {
            self.exceeded = true;
            return Err(wasmtime::format_err!(
                "the flow tried to grow its memory to {desired} bytes, past the cap of {} bytes",
                self.cap_bytes
            ));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}
