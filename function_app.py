"""The Functions app: create it and register one blueprint per capability. Nothing else.

Plain imports on purpose: an import error fails indexing loudly instead of silently dropping a
capability. Blueprint modules import no Azure SDK at import time (cold start; bench/cold_start.py).
"""

import azure.functions as func

from functions import conformance, credentials, fleet, fleet_health, health, images

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
app.register_functions(health.bp)
app.register_functions(fleet.bp)
app.register_functions(fleet_health.bp)
app.register_functions(images.bp)
app.register_functions(credentials.bp)
app.register_functions(conformance.bp)
