// Package pipelinetest is test support, imported only by _test.go files: what the tests
// and benchmarks of several stages share because it spans stages.
//
//   - The model (model.go): random conversation histories delivered with duplicates and
//     reordering, and Reference, the read model they must produce, computed by a plain
//     fold written independently of the processor and the projector.
//   - The stack (stack.go): a webhook endpoint and a processor with a projector started
//     in process on a test's own topics and schema.
//
// It lives outside internal/ because internal/ holds plumbing that knows no stage, and
// outside the stages because no stage imports another. TestStagesMeetOnlyThroughSchemas
// (in the module's root) keeps it that way.
package pipelinetest
