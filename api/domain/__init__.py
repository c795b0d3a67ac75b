"""The domain: lambda instances, actions and their states. Imports no framework."""
