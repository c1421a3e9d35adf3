"""The sandbox's /api/... endpoints: a route table (``router``) and thin views, one module per resource."""
