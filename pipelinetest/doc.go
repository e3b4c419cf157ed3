// Package pipelinetest is test support, imported only by _test.go files: what the tests
// and benchmarks of several stages share because it spans stages.
//
//   - The model (model.go): random conversation histories delivered with duplicates and
//     reordering, and Reference, the read model they must produce, computed by a plain
//     fold written independently of the processor and the projector.
//   - The stack (stack.go): the ingest role, and the processor and projector roles,
//     started in process on a test's own topics and schema through app.Start, the
//     binary's own assembly: no second wiring of the stages here. A test may put its own
//     registries, pool (a proxy, a pooler) and projector hook in (app.Options).
//
// It lives outside internal/ because internal/ holds plumbing that knows no stage, and
// outside the stages because no stage imports another (nor app, which imports them all).
// TestStagesMeetOnlyThroughSchemas (layout_test.go) keeps it that way. A stage's own
// in-package tests cannot import it, since app imports the stage: they get the stack from
// the stage's external tests (ingest/backfill's export_test.go).
package pipelinetest
