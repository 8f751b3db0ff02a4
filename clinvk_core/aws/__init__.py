"""What only a deployment on AWS needs: the Secrets Manager secret and the CLIs' login files it carries."""
