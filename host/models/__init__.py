"""Small models the project trains itself and ships, for accuracy checks without downloads."""
