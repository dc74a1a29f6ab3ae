"""The reference push stack: the platform of DESIGN.md section 1, in miniature.

Each service is one module around the same lifecycle (`pushstack.service.PushService`);
`python -m pushstack.run NAME --inventory FILE` starts the service named NAME.
The only thing imported from pushctl is its contract (`pushctl.contract`).
"""
