// Files the Worker bundles as text: wrangler.toml's [[rules]] type = "Text" makes their
// default export the file's content (the dashboard page, its script, and uPlot's dist files).
declare module "*.html" {
  const text: string;
  export default text;
}
declare module "*.css" {
  const text: string;
  export default text;
}
declare module "*.min.js" {
  const text: string;
  export default text;
}
declare module "*.client.js" {
  const text: string;
  export default text;
}
declare module "swagger-ui-dist/swagger-ui-bundle.js" {
  const text: string;
  export default text;
}
