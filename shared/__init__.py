"""appgw-cert-bot: diagnose and fix Application Gateway backend certificate trust."""
