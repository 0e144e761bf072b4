"""fluxfleet's lab: a local, faithful emulator of the Azure APIs the app uses.

The app's tests, benchmarks and demo drive the real, unchanged Azure SDKs against it over HTTPS.
`lab` never imports `shared` (except the pure Flux semantics in `shared.image_policy`), so the
emulator is not shaped by the code it tests.
"""
