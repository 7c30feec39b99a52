//! The raw imports: proxy-wasm ABI 0.2.1 (`env`) and the WASI preview1 calls the probe makes. Every call
//! returns its status; nothing here interprets it.

#[link(wasm_import_module = "env")]
unsafe extern "C" {
    pub fn proxy_log(level: u32, message: *const u8, size: usize) -> u32;
    pub fn proxy_get_log_level(level: *mut u32) -> u32;
    pub fn proxy_get_current_time_nanoseconds(time: *mut u64) -> u32;
    pub fn proxy_set_tick_period_milliseconds(period: u32) -> u32;

    pub fn proxy_get_property(path: *const u8, path_size: usize, value: *mut *mut u8, value_size: *mut usize) -> u32;
    pub fn proxy_set_property(path: *const u8, path_size: usize, value: *const u8, value_size: usize) -> u32;

    pub fn proxy_get_header_map_value(
        map: u32,
        key: *const u8,
        key_size: usize,
        value: *mut *mut u8,
        value_size: *mut usize,
    ) -> u32;
    pub fn proxy_get_header_map_pairs(map: u32, pairs: *mut *mut u8, pairs_size: *mut usize) -> u32;
    pub fn proxy_get_header_map_size(map: u32, size: *mut usize) -> u32;
    pub fn proxy_set_header_map_pairs(map: u32, pairs: *const u8, pairs_size: usize) -> u32;
    pub fn proxy_add_header_map_value(
        map: u32,
        key: *const u8,
        key_size: usize,
        value: *const u8,
        value_size: usize,
    ) -> u32;
    pub fn proxy_replace_header_map_value(
        map: u32,
        key: *const u8,
        key_size: usize,
        value: *const u8,
        value_size: usize,
    ) -> u32;
    pub fn proxy_remove_header_map_value(map: u32, key: *const u8, key_size: usize) -> u32;

    pub fn proxy_get_buffer_bytes(
        buffer: u32,
        start: usize,
        max_size: usize,
        value: *mut *mut u8,
        value_size: *mut usize,
    ) -> u32;
    pub fn proxy_get_buffer_status(buffer: u32, length: *mut usize, flags: *mut u32) -> u32;
    pub fn proxy_set_buffer_bytes(buffer: u32, start: usize, size: usize, value: *const u8, value_size: usize) -> u32;

    pub fn proxy_get_shared_data(
        key: *const u8,
        key_size: usize,
        value: *mut *mut u8,
        value_size: *mut usize,
        cas: *mut u32,
    ) -> u32;
    pub fn proxy_set_shared_data(key: *const u8, key_size: usize, value: *const u8, value_size: usize, cas: u32)
    -> u32;

    pub fn proxy_register_shared_queue(name: *const u8, name_size: usize, token: *mut u32) -> u32;
    pub fn proxy_resolve_shared_queue(
        vm_id: *const u8,
        vm_id_size: usize,
        name: *const u8,
        name_size: usize,
        token: *mut u32,
    ) -> u32;
    pub fn proxy_enqueue_shared_queue(token: u32, value: *const u8, value_size: usize) -> u32;
    pub fn proxy_dequeue_shared_queue(token: u32, value: *mut *mut u8, value_size: *mut usize) -> u32;

    pub fn proxy_define_metric(kind: u32, name: *const u8, name_size: usize, id: *mut u32) -> u32;
    pub fn proxy_increment_metric(id: u32, offset: i64) -> u32;
    pub fn proxy_record_metric(id: u32, value: u64) -> u32;
    pub fn proxy_get_metric(id: u32, value: *mut u64) -> u32;

    pub fn proxy_http_call(
        upstream: *const u8,
        upstream_size: usize,
        headers: *const u8,
        headers_size: usize,
        body: *const u8,
        body_size: usize,
        trailers: *const u8,
        trailers_size: usize,
        timeout_ms: u32,
        token: *mut u32,
    ) -> u32;

    pub fn proxy_call_foreign_function(
        name: *const u8,
        name_size: usize,
        arguments: *const u8,
        arguments_size: usize,
        results: *mut *mut u8,
        results_size: *mut usize,
    ) -> u32;

    pub fn proxy_grpc_call(
        service: *const u8,
        service_size: usize,
        service_name: *const u8,
        service_name_size: usize,
        method: *const u8,
        method_size: usize,
        metadata: *const u8,
        metadata_size: usize,
        message: *const u8,
        message_size: usize,
        timeout_ms: u32,
        token: *mut u32,
    ) -> u32;
    pub fn proxy_grpc_stream(
        service: *const u8,
        service_size: usize,
        service_name: *const u8,
        service_name_size: usize,
        method: *const u8,
        method_size: usize,
        metadata: *const u8,
        metadata_size: usize,
        token: *mut u32,
    ) -> u32;
    pub fn proxy_grpc_send(token: u32, message: *const u8, message_size: usize, end_stream: u32) -> u32;
    pub fn proxy_grpc_cancel(token: u32) -> u32;
    pub fn proxy_grpc_close(token: u32) -> u32;

    pub fn proxy_continue_stream(stream: u32) -> u32;
    pub fn proxy_close_stream(stream: u32) -> u32;
    pub fn proxy_send_local_response(
        status: u32,
        details: *const u8,
        details_size: usize,
        body: *const u8,
        body_size: usize,
        headers: *const u8,
        headers_size: usize,
        grpc_status: i32,
    ) -> u32;
    pub fn proxy_set_effective_context(context: u32) -> u32;
    pub fn proxy_done() -> u32;
    pub fn proxy_get_status(code: *mut u32, message: *mut *mut u8, message_size: *mut usize) -> u32;
}

#[link(wasm_import_module = "wasi_snapshot_preview1")]
unsafe extern "C" {
    #[link_name = "clock_time_get"]
    pub fn wasi_clock_time_get(clock: u32, precision: u64, time: *mut u64) -> u32;
    #[link_name = "random_get"]
    pub fn wasi_random_get(buf: *mut u8, len: usize) -> u32;
    #[link_name = "environ_sizes_get"]
    pub fn wasi_environ_sizes_get(count: *mut usize, size: *mut usize) -> u32;
    #[link_name = "args_sizes_get"]
    pub fn wasi_args_sizes_get(count: *mut usize, size: *mut usize) -> u32;
    #[link_name = "fd_write"]
    pub fn wasi_fd_write(fd: u32, iovs: *const u32, iovs_len: usize, written: *mut usize) -> u32;
    #[link_name = "fd_fdstat_get"]
    pub fn wasi_fd_fdstat_get(fd: u32, stat: *mut u8) -> u32;
}
