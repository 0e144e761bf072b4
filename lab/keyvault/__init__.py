"""Key Vault secrets for the lab: the vault that holds the fleet's Flux Git credential."""

from lab.keyvault.service import KeyVaultService as SERVICE

__all__ = ["SERVICE"]
