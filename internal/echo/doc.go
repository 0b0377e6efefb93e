// Package echo is the built-in test application that `zmesh echo` runs
// behind each workload's proxy in the local mesh and the benchmarks.
//
// It is a plain HTTP server that knows nothing about the mesh: it answers
// with a JSON echo of the request it received (so a caller can see the
// X-Forwarded-Client-Cert header the server-side proxy added), calls other
// services through its HTTP client (which `zmesh up` points at the
// workload's outbound proxy with HTTP_PROXY), and serves fixed-size bodies
// for load tests. It logs nothing per request, so that latency benchmarks
// measure the mesh and not the app.
//
// Routes:
//
//	GET /healthz            200 "ok"
//	GET /size/N             an N-byte body (0 <= N <= MaxSize), for load tests
//	GET /call/HOST/PATH?Q   GET http://HOST/PATH?Q through the client; answers 200 with
//	                        {"status": CODE, "body": "..."} when the call was made,
//	                        502 with {"error": "..."} when it could not be made
//	any other path          200 with a JSON Echo of the request
package echo
