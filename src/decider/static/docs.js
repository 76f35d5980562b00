// Starts Swagger UI on /docs. A file rather than an inline script, so the page runs under the
// Content-Security-Policy (see src/decider/web/headers.py). Options as FastAPI's get_swagger_ui_html.
window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  layout: "BaseLayout",
  deepLinking: true,
  showExtensions: true,
  showCommonExtensions: true,
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
});
