//! Arbitrary bytes as an MCP request: the first line holds mirrored headers (`name:value` pairs separated by
//! `\t`), the rest is the body. Reading the message never panics, a message read is JSON-RPC as the policy
//! assumes (a request or response has an id, a tool call a name), and an MCP policy decides it the same
//! through its index as rule by rule.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    agent_iam_fuzz::check_mcp_request(data);
});
