"""The stand-in daemons. Installed as ``lambda_standin`` under each distribution's libexec/."""
