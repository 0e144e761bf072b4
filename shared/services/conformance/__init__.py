"""Fleet conformance (issue 14): the fleet's Flux setup declared once in Git, panels made to match it.

- `declaration`: `kubernetes/fleet/flux.yaml`, parsed strictly (errors name the field);
- `drift`: a panel's extension and Flux configuration as ARM returns them, against the declaration:
  differences, state, and the smallest repairing writes;
- `strategy`: `conform` and `flux-reset`, kinds of the fleet-change engine that write several resources
  per panel (extension PUT/PATCH, configuration PUT/PATCH/DELETE) one step per apply;
- `ports`: what conformance reads and writes (ARM today; the Resource Graph seam for reads);
- `service`: `GET /api/fleet/conformance`, `POST /api/fleet/conform`, `POST /api/fleet/reset`, onboarding
  from Event Grid's `ResourceWriteSuccess`.

Nothing is imported here: the Functions host imports this package when it indexes the app.
"""
