// The API reference page: Redoc renders this node's own /openapi.json.
Redoc.init(
  "/openapi.json",
  { expandResponses: "200,201", hideHostname: false, jsonSampleExpandLevel: 2 },
  document.getElementById("reference"),
);
